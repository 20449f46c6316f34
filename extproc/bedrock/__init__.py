"""Everything specific to Amazon Bedrock Runtime: SigV4, credentials, the model catalogue, its errors."""
