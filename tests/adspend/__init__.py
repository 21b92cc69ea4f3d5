"""Ad spend pulled from the ad platforms (calltracker/adspend/)."""
