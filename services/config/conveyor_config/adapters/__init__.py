"""Everything config talks to: the database (`storage`), NATS (`changes`, `jetstream`), the deployer (`targets`)."""
