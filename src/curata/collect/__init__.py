"""Collection: getting data into the platform, de-identified at the edge."""
