"""sidekiq-fleet: Sidekiq under systemd on EC2 or existing hosts, managed by Pulumi.

The package reads as the pipeline: config -> render -> scripts -> hosts/service -> fleet.
"""
