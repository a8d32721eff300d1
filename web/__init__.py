"""What both HTTP apps (api/ and serving/) share: the error shape, the API-key check, per-key rates."""
