"""What a CRM webhook post names, and the checks that keep a stranger's post out."""

from __future__ import annotations

import pytest

from calltracker.deals import hooks
from calltracker.errors import Invalid

TOKEN = "51856fefc120afa4b628cc82d3935cce"


def bitrix(event: str, deal_id: str = "759", token: str = TOKEN) -> dict[str, str]:
    return {
        "event": event,
        "data[FIELDS][ID]": deal_id,
        "ts": "1736405807",
        "auth[application_token]": token,
        "auth[domain]": "some-domain.bitrix24.com",
    }


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ("ONCRMDEALADD", (("deal", "759"),)),
        ("ONCRMDEALUPDATE", (("deal", "759"),)),
        ("onCrmDealUpdate", (("deal", "759"),)),
        ("ONCRMDEALDELETE", (("deal", "759"),)),
        ("ONCRMLEADUPDATE", (("lead", "759"),)),
        ("ONCRMCONTACTUPDATE", ()),  # another event of the same webhook: nothing to read
    ],
)
def test_bitrix24_events_name_a_deal_or_a_lead(
    event: str, named: tuple[tuple[str, str], ...]
) -> None:
    assert hooks.bitrix24(bitrix(event), TOKEN).records == named


@pytest.mark.parametrize("token", ["", "wrong", TOKEN[:-1]])
def test_bitrix24_events_without_the_application_token_are_refused(token: str) -> None:
    with pytest.raises(hooks.BadToken):
        hooks.bitrix24(bitrix("ONCRMDEALUPDATE", token=token), TOKEN)
    with pytest.raises(hooks.BadToken):  # nor is any event accepted when none is configured
        hooks.bitrix24(bitrix("ONCRMDEALUPDATE"), "")


@pytest.mark.parametrize("deal_id", ["", "abc", "1 OR 1=1", "9" * 21])
def test_a_bitrix24_event_with_a_bad_id_is_a_clear_error(deal_id: str) -> None:
    with pytest.raises(Invalid, match="data\\[FIELDS\\]\\[ID\\]"):
        hooks.bitrix24(bitrix("ONCRMDEALUPDATE", deal_id), TOKEN)


def test_a_json_event_reads_like_the_form() -> None:
    body = {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "759"}},
            "auth": {"application_token": TOKEN}}  # fmt: skip
    assert hooks.bitrix24(dict(hooks.flatten(body)), TOKEN).records == (("deal", "759"),)


def test_amocrm_posts_name_every_lead_once() -> None:
    form = {
        "leads[status][0][id]": "25399013",
        "leads[status][0][status_id]": "142",
        "leads[status][0][old_status_id]": "1001",
        "leads[update][0][id]": "25399013",
        "leads[add][0][id]": "25399014",
        "contacts[add][0][id]": "77",  # not a lead: not ours to read
        "account[subdomain]": "example",
    }
    named = hooks.amocrm(form, "s3cret", "s3cret")
    assert named.records == (("deal", "25399013"), ("deal", "25399014"))
    assert named.event == "add,status,update"


def test_amocrm_posts_to_a_url_with_the_wrong_secret_are_refused() -> None:
    with pytest.raises(hooks.BadToken):
        hooks.amocrm({"leads[add][0][id]": "1"}, "guess", "s3cret")
    with pytest.raises(Invalid):
        hooks.amocrm({"leads[add][0][id]": "x"}, "s3cret", "s3cret")
