"""Records, domain documents and store adapters of the ordering system (see docs/store.md)."""
