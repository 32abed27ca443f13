/** The SQLite store's schema: each entry upgrades it by one version (PRAGMA user_version); never edit one, append. */
export const MIGRATIONS = [
  `CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     public_key TEXT NOT NULL,
     enrollment TEXT NOT NULL CHECK (enrollment IN ('pending', 'accepted', 'rejected')),
     groups_json TEXT NOT NULL DEFAULT '[]',
     tags_json TEXT NOT NULL DEFAULT '[]',
     architecture TEXT,
     state TEXT,
     booted_json TEXT,
     staged_json TEXT,
     agent_version TEXT,
     online INTEGER NOT NULL DEFAULT 0,
     last_seen TEXT,
     last_counter INTEGER,
     enrolled_at TEXT NOT NULL
   );
   CREATE TABLE device_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device_id TEXT NOT NULL REFERENCES devices(id),
     at TEXT NOT NULL,
     kind TEXT NOT NULL,
     report_json TEXT
   );
   CREATE INDEX device_events_by_device ON device_events(device_id, id);`,
  `CREATE TABLE rollouts (
     id TEXT PRIMARY KEY,
     ref TEXT NOT NULL,
     channel TEXT NOT NULL,
     version TEXT NOT NULL,
     commit_id TEXT NOT NULL,
     selector_json TEXT NOT NULL,
     plan_json TEXT NOT NULL,
     progress_json TEXT NOT NULL,
     pause_reason TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE rollout_devices (
     rollout_id TEXT NOT NULL REFERENCES rollouts(id),
     device_id TEXT NOT NULL REFERENCES devices(id),
     wave INTEGER NOT NULL,
     status TEXT NOT NULL,
     sent_at TEXT,
     updated_at TEXT NOT NULL,
     detail TEXT,
     PRIMARY KEY (rollout_id, device_id)
   );`,
  `ALTER TABLE devices ADD COLUMN pending_json TEXT;
   ALTER TABLE devices ADD COLUMN rollback_json TEXT;`,
  // Counts by aggregate queries over indexes, not by reading every device (issue 18, finding 3).
  `CREATE INDEX devices_by_enrollment ON devices(enrollment, online);
   CREATE INDEX devices_by_state ON devices(enrollment, state);
   CREATE INDEX devices_by_version ON devices(enrollment, json_extract(booted_json, '$.version'));
   CREATE INDEX device_events_by_time ON device_events(at);
   CREATE INDEX rollout_devices_by_status ON rollout_devices(rollout_id, status);
   CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);`,
  // Issue 19: enrollment states preauthorized and revoked (a CHECK changes only by rebuilding the
  // table, SQLite's 12-step ALTER; migrate() runs it with foreign keys off and checks them after),
  // groups split into what the operator assigns (groups_json) and what the device reports
  // (reported_groups_json): the groups stored so far came from reports, so they move there and no
  // device is in a group until the operator puts it in one. Keys barred by revoke and rekey.
  `CREATE TABLE devices_v5 (
     id TEXT PRIMARY KEY,
     public_key TEXT NOT NULL,
     enrollment TEXT NOT NULL CHECK (enrollment IN ('pending', 'preauthorized', 'accepted', 'rejected', 'revoked')),
     groups_json TEXT NOT NULL DEFAULT '[]',
     reported_groups_json TEXT NOT NULL DEFAULT '[]',
     tags_json TEXT NOT NULL DEFAULT '[]',
     architecture TEXT,
     state TEXT,
     booted_json TEXT,
     staged_json TEXT,
     pending_json TEXT,
     rollback_json TEXT,
     agent_version TEXT,
     online INTEGER NOT NULL DEFAULT 0,
     last_seen TEXT,
     last_counter INTEGER,
     enrolled_at TEXT NOT NULL
   );
   INSERT INTO devices_v5 (id, public_key, enrollment, groups_json, reported_groups_json, tags_json, architecture, state, booted_json, staged_json, pending_json, rollback_json, agent_version, online, last_seen, last_counter, enrolled_at)
     SELECT id, public_key, enrollment, '[]', groups_json, tags_json, architecture, state, booted_json, staged_json, pending_json, rollback_json, agent_version, online, last_seen, last_counter, enrolled_at FROM devices;
   DROP TABLE devices;
   ALTER TABLE devices_v5 RENAME TO devices;
   CREATE INDEX devices_by_enrollment ON devices(enrollment, online);
   CREATE INDEX devices_by_state ON devices(enrollment, state);
   CREATE INDEX devices_by_version ON devices(enrollment, json_extract(booted_json, '$.version'));
   CREATE TABLE revoked_keys (
     public_key TEXT PRIMARY KEY,
     device_id TEXT NOT NULL,
     revoked_at TEXT NOT NULL,
     reason TEXT NOT NULL CHECK (reason IN ('revoked', 'rekeyed'))
   );`,
];
