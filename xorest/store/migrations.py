"""Numbered schema steps, applied in order at start-up, the same list for every backend.

The scripts are written in SQLite's SQL; a backend translates the few words that differ
(:meth:`~xorest.store.sql.SqlStore._schema_statements`: PostgreSQL's types, its identity
column, its case-insensitive collation) and records the version its own way.
"""

MIGRATIONS = [
    # 1: initial schema
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        last_used_at REAL,
        renewed_at REAL,
        revoked_at REAL
    );
    CREATE INDEX tokens_user ON tokens(user_id);
    CREATE TABLE servers (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        username TEXT NOT NULL,
        password_enc TEXT NOT NULL,
        ca_file TEXT,
        insecure INTEGER NOT NULL DEFAULT 0,
        label TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_at REAL NOT NULL
    );
    """,
    # 2: token families (a renewal belongs to the family of the token it renews, and
    # revoking any member revokes them all); confirmed failures apart from counted attempts
    """
    ALTER TABLE tokens ADD COLUMN family_id TEXT;
    UPDATE tokens SET family_id = id;
    UPDATE tokens SET family_id = (SELECT t.id FROM tokens AS t WHERE 'renewal of ' || t.id = tokens.description)
        WHERE description LIKE 'renewal of %'
        AND EXISTS (SELECT 1 FROM tokens AS t WHERE 'renewal of ' || t.id = tokens.description);
    CREATE INDEX tokens_family ON tokens(family_id);
    ALTER TABLE login_failures ADD COLUMN failed_at REAL;
    UPDATE login_failures SET failed_at = last_at;
    """,
    # 3: roles (users and tokens), token scopes, the audit trail
    """
    ALTER TABLE users ADD COLUMN role TEXT;
    UPDATE users SET role = 'pool-admin' WHERE is_admin = 1;
    ALTER TABLE tokens ADD COLUMN role TEXT;
    ALTER TABLE tokens ADD COLUMN scope TEXT;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        user_id TEXT,
        user_email TEXT,
        token_id TEXT,
        address TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        operation TEXT,
        status INTEGER,
        error TEXT
    );
    CREATE INDEX audit_at ON audit(at);
    """,
    # 4: event streams (an SSE connection lives in one worker; its subscriptions may be
    # added through any worker or instance)
    """
    CREATE TABLE event_streams (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        opened_at REAL NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE TABLE event_subscriptions (
        stream_id TEXT NOT NULL REFERENCES event_streams(id) ON DELETE CASCADE,
        collection TEXT NOT NULL,
        fields TEXT NOT NULL,
        filter TEXT,
        PRIMARY KEY (stream_id, collection)
    );
    """,
    # 5: the task log shared by every process (a task run by one worker is seen, waited for
    # and aborted from any other), its order of changes for watchers, what was written
    # through each pool (so that reads wait for it), servers that can be disconnected
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        object_id TEXT,
        body TEXT NOT NULL,
        links TEXT NOT NULL DEFAULT '[]',
        abort_requested_at REAL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX tasks_object ON tasks(object_id);
    CREATE INDEX tasks_seq ON tasks(seq);
    CREATE INDEX tasks_status ON tasks(status);
    CREATE TABLE task_removals (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        removed_at REAL NOT NULL
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('task_seq', 0);
    CREATE TABLE pool_writes (
        server_id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        written_at REAL NOT NULL
    );
    ALTER TABLE servers ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
    """,
    # 6: the token a token was made with (revoking a token revokes the tokens made with it,
    # whatever family they started)
    """
    ALTER TABLE tokens ADD COLUMN parent_id TEXT;
    CREATE INDEX tokens_parent ON tokens(parent_id);
    """,
    # 7: a value encrypted with the instance's key: an instance whose key differs (several
    # instances on one database need the same key) is refused at start-up, before it fails
    # to decrypt a pool password
    """
    CREATE TABLE key_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL
    );
    """,
    # 8: when each machine running xorest on this database last said it is alive: the
    # pending tasks of a machine silent for long are interrupted by the others
    """
    CREATE TABLE hosts_alive (
        host TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    """,
]


def statements(script):
    """The statements of a migration script (none holds a ``;`` of its own)."""
    return [statement for statement in script.split(";") if statement.strip()]


def migrate(store, target=None):
    """Bring the store's database to the latest schema (or to ``target``), in one
    transaction; safe to run from several processes and instances at once (the backend's
    ``_migration`` lets one of them at a time in)."""
    target = len(MIGRATIONS) if target is None else target
    with store._migration() as conn:
        version = store._schema_version(conn)
        for number in range(version + 1, target + 1):
            for statement in store._schema_statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            store._set_schema_version(conn, number)
