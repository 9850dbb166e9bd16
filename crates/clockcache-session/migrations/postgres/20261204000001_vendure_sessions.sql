-- The tables Vendure's SessionService reads (session, user, role, channel and the join tables
-- of User.roles and Role.channels), plus the native authentication method and a minimal order
-- table for the active order. Role permissions are a comma-separated list, as TypeORM's
-- simple-array stores them. Dates are TIMESTAMPTZ.
CREATE TABLE channel (
    id BIGSERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE
);

CREATE TABLE role (
    id BIGSERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL
);

CREATE TABLE role_channels_channel (
    role_id BIGINT NOT NULL REFERENCES role (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL REFERENCES channel (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, channel_id)
);

CREATE TABLE "user" (
    id BIGSERIAL PRIMARY KEY,
    identifier TEXT NOT NULL UNIQUE,
    verified BOOLEAN NOT NULL
);

CREATE TABLE user_roles_role (
    user_id BIGINT NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    role_id BIGINT NOT NULL REFERENCES role (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE authentication_method (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    identifier TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    UNIQUE (type, identifier)
);

CREATE TABLE "order" (
    id BIGSERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE
);

CREATE TABLE session (
    id BIGSERIAL PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    expires TIMESTAMPTZ NOT NULL,
    invalidated BOOLEAN NOT NULL,
    authentication_strategy TEXT,
    active_order_id BIGINT REFERENCES "order" (id) ON DELETE SET NULL,
    active_channel_id BIGINT REFERENCES channel (id) ON DELETE SET NULL,
    user_id BIGINT REFERENCES "user" (id) ON DELETE CASCADE
);

CREATE INDEX session_user_id ON session (user_id);
CREATE INDEX session_active_order_id ON session (active_order_id);
