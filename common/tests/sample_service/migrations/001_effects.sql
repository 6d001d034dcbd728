CREATE TABLE effects (
    id bigserial PRIMARY KEY,
    n integer NOT NULL,
    pid integer NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now()
);
