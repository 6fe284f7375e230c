"""The fleet: many sources synced in one flow run (`run`), one source of it (`source`), and a fleet split
into child runs across workers (`shards`). The flows that use it (sync-fleet, sync-scheduled) live in
flows/."""
