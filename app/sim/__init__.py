"""VentraSim: the merchant that receives, verifies and records Ventra's webhooks."""
