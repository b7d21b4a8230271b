"""On-disk datasets in the official builders' layout, and the samplers that read them."""
