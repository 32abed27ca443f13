/**
 * The PostgreSQL store's schema: each entry upgrades it by one version (table schema_version);
 * never edit one, append. The columns are the SQLite store's (JSON as text, flags as 0/1), so
 * both map rows to records the same way (store-rows.ts). Text keys are ordered bytewise
 * (COLLATE "C"), as SQLite orders them, whatever locale the database was created with.
 */
export const PG_MIGRATIONS = [
  `CREATE TABLE devices (
     id TEXT COLLATE "C" PRIMARY KEY,
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
     online SMALLINT NOT NULL DEFAULT 0,
     last_seen TEXT,
     last_counter BIGINT,
     enrolled_at TEXT NOT NULL
   );
   CREATE INDEX devices_by_enrollment ON devices(enrollment, online);
   CREATE INDEX devices_by_state ON devices(enrollment, state);
   CREATE INDEX devices_by_version ON devices(enrollment, ((booted_json::jsonb) ->> 'version'));
   CREATE TABLE device_events (
     id BIGSERIAL PRIMARY KEY,
     device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id),
     at TEXT COLLATE "C" NOT NULL,
     kind TEXT NOT NULL,
     report_json TEXT
   );
   CREATE INDEX device_events_by_device ON device_events(device_id, id);
   CREATE INDEX device_events_by_time ON device_events(at);
   CREATE TABLE rollouts (
     id TEXT COLLATE "C" PRIMARY KEY,
     ref TEXT NOT NULL,
     channel TEXT NOT NULL,
     version TEXT NOT NULL,
     commit_id TEXT NOT NULL,
     selector_json TEXT NOT NULL,
     plan_json TEXT NOT NULL,
     progress_json TEXT NOT NULL,
     pause_reason TEXT,
     created_at TEXT COLLATE "C" NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE rollout_devices (
     rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts(id),
     device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id),
     wave INTEGER NOT NULL,
     status TEXT NOT NULL,
     sent_at TEXT,
     updated_at TEXT NOT NULL,
     detail TEXT,
     PRIMARY KEY (rollout_id, device_id)
   );
   CREATE INDEX rollout_devices_by_status ON rollout_devices(rollout_id, status);
   CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);
   CREATE TABLE revoked_keys (
     public_key TEXT PRIMARY KEY,
     device_id TEXT NOT NULL,
     revoked_at TEXT NOT NULL,
     reason TEXT NOT NULL CHECK (reason IN ('revoked', 'rekeyed'))
   );`,
  // Secrets every instance must share: the dashboard's session key (http/sessions.ts).
  `CREATE TABLE server_secrets (
     name TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );`,
];
