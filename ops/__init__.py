"""sidekiq-fleet: operate a stage from its stack outputs."""
