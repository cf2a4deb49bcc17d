-- Solidarity production campaigns: the labs of a network, campaigns with their validated
-- model files and bill of materials, recipients' requests, makers' pledges and batches,
-- quality checks, material donations and stock, assemblies, deliveries, and the links that
-- trace a delivered item back to the batches (and makers) its parts came from.
--
-- Every count shown (requested, pledged, produced, received, accepted, assembled,
-- delivered) is a sum over these records. The `*_left` and stock columns are balances kept
-- in the same transaction as the records that move them; their CHECKs make the database
-- itself refuse a negative stock or an item allocated twice.

CREATE TABLE labs (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
-- The lab of a single-node install. A node whose `lab_name` names another lab adds it.
INSERT INTO labs (name, created_at) VALUES ('Fablab', 0);

CREATE TABLE campaigns (
    id                 BIGSERIAL PRIMARY KEY,
    lab_id             BIGINT NOT NULL REFERENCES labs (id),
    title              TEXT NOT NULL,
    item               TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    profile            TEXT NOT NULL DEFAULT '',
    collection_points  TEXT NOT NULL DEFAULT '',
    target_quantity    BIGINT NOT NULL CHECK (target_quantity > 0),
    state              TEXT NOT NULL CHECK (state IN ('draft', 'open', 'paused', 'closed')),
    created_by         BIGINT NOT NULL REFERENCES users (id),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

-- Model files, kept in the database so that every node of the network can print them and
-- makers can download them. Only a validated file is printed.
CREATE TABLE campaign_files (
    id               BIGSERIAL PRIMARY KEY,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id),
    lab_id           BIGINT NOT NULL REFERENCES labs (id),
    file_name        TEXT NOT NULL,
    stored_name      TEXT NOT NULL UNIQUE,
    size_bytes       BIGINT NOT NULL,
    sha256           TEXT NOT NULL,
    content          BYTEA NOT NULL,
    analysis         TEXT,
    estimate_s       BIGINT,
    findings         BIGINT NOT NULL DEFAULT 0,
    parts_per_print  BIGINT NOT NULL DEFAULT 1 CHECK (parts_per_print > 0),
    uploaded_by      BIGINT NOT NULL REFERENCES users (id),
    created_at       BIGINT NOT NULL,
    validated_at     BIGINT,
    validated_by     BIGINT REFERENCES users (id),
    validation_note  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX campaign_files_campaign ON campaign_files (campaign_id);

-- The bill of materials of one item, besides its printed part.
CREATE TABLE campaign_materials (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    name         TEXT NOT NULL,
    unit         TEXT NOT NULL,
    per_item     BIGINT NOT NULL CHECK (per_item > 0),
    created_at   BIGINT NOT NULL,
    UNIQUE (campaign_id, name)
);

-- What each lab holds of a material: donations add, assemblies take.
CREATE TABLE campaign_stock (
    material_id  BIGINT NOT NULL REFERENCES campaign_materials (id),
    lab_id       BIGINT NOT NULL REFERENCES labs (id),
    quantity     BIGINT NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (material_id, lab_id)
);

CREATE TABLE campaign_donations (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    material_id  BIGINT NOT NULL REFERENCES campaign_materials (id),
    lab_id       BIGINT NOT NULL REFERENCES labs (id),
    donor        TEXT NOT NULL,
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    recorded_by  BIGINT NOT NULL REFERENCES users (id),
    received_at  BIGINT NOT NULL
);
CREATE INDEX campaign_donations_campaign ON campaign_donations (campaign_id);

-- A recipient organisation's request. A split request keeps its row (status `split`) and
-- its two parts point at it; `root_id` is the request the organisation sent.
CREATE TABLE campaign_requests (
    id              BIGSERIAL PRIMARY KEY,
    campaign_id     BIGINT NOT NULL REFERENCES campaigns (id),
    lab_id          BIGINT NOT NULL REFERENCES labs (id),
    parent_id       BIGINT REFERENCES campaign_requests (id),
    root_id         BIGINT REFERENCES campaign_requests (id),
    organisation    TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('care_home', 'hospital', 'shop', 'school', 'association', 'other')),
    quantity        BIGINT NOT NULL CHECK (quantity > 0),
    needed_by       TEXT NOT NULL,
    delivery_place  TEXT NOT NULL,
    contact_name    TEXT NOT NULL,
    contact_phone   TEXT NOT NULL DEFAULT '',
    contact_email   TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('new', 'accepted', 'refused', 'split')),
    priority        BIGINT NOT NULL DEFAULT 0,
    refusal_reason  TEXT NOT NULL DEFAULT '',
    follow_token    TEXT UNIQUE,
    created_at      BIGINT NOT NULL,
    decided_at      BIGINT,
    decided_by      BIGINT REFERENCES users (id)
);
CREATE INDEX campaign_requests_campaign ON campaign_requests (campaign_id);
CREATE INDEX campaign_requests_root ON campaign_requests (root_id);

-- Recent submissions of the public request form, per address, for its rate limit.
CREATE TABLE request_submissions (
    id  BIGSERIAL PRIMARY KEY,
    ip  TEXT NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX request_submissions_ip ON request_submissions (ip, at);

CREATE TABLE campaign_pledges (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    lab_id       BIGINT NOT NULL REFERENCES labs (id),
    maker_id     BIGINT NOT NULL REFERENCES users (id),
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    due_by       TEXT NOT NULL,
    place        TEXT NOT NULL CHECK (place IN ('home', 'lab')),
    created_at   BIGINT NOT NULL
);
CREATE INDEX campaign_pledges_campaign ON campaign_pledges (campaign_id, maker_id);

-- Printed parts: declared by a maker (or collected from the lab's own prints), dropped at a
-- collection point, received and counted by a manager, then checked. `lab_id` is the lab
-- that received it (before that, the lab where it was declared).
CREATE TABLE campaign_batches (
    id                 BIGSERIAL PRIMARY KEY,
    campaign_id        BIGINT NOT NULL REFERENCES campaigns (id),
    lab_id             BIGINT NOT NULL REFERENCES labs (id),
    source             TEXT NOT NULL CHECK (source IN ('maker', 'lab')),
    maker_id           BIGINT REFERENCES users (id),
    pledge_id          BIGINT REFERENCES campaign_pledges (id),
    quantity           BIGINT NOT NULL CHECK (quantity > 0),
    declared_at        BIGINT NOT NULL,
    collection_point   TEXT NOT NULL DEFAULT '',
    dropped_at         BIGINT,
    received_quantity  BIGINT CHECK (received_quantity >= 0),
    received_at        BIGINT,
    received_by        BIGINT REFERENCES users (id),
    accepted_quantity  BIGINT CHECK (accepted_quantity >= 0 AND accepted_quantity <= received_quantity),
    rejection_reason   TEXT NOT NULL DEFAULT '',
    checked_at         BIGINT,
    checked_by         BIGINT REFERENCES users (id),
    parts_left         BIGINT NOT NULL DEFAULT 0 CHECK (parts_left >= 0 AND parts_left <= COALESCE(accepted_quantity, 0)),
    CHECK (source = 'lab' OR maker_id IS NOT NULL)
);
CREATE INDEX campaign_batches_campaign ON campaign_batches (campaign_id, lab_id);

-- Campaign jobs of the lab's printers: which campaign and file, how many parts one print
-- makes, and the lab batch that collected them once done.
ALTER TABLE jobs ADD COLUMN campaign_id BIGINT REFERENCES campaigns (id);
CREATE TABLE campaign_prints (
    job_id       BIGINT PRIMARY KEY REFERENCES jobs (id),
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    file_id      BIGINT NOT NULL REFERENCES campaign_files (id),
    lab_id       BIGINT NOT NULL REFERENCES labs (id),
    parts        BIGINT NOT NULL CHECK (parts > 0),
    batch_id     BIGINT REFERENCES campaign_batches (id)
);
CREATE INDEX campaign_prints_campaign ON campaign_prints (campaign_id, lab_id);

-- Items assembled from accepted parts (drawn from batches, oldest checked first) and the
-- bill of materials (taken from the lab's stock).
CREATE TABLE campaign_assemblies (
    id            BIGSERIAL PRIMARY KEY,
    campaign_id   BIGINT NOT NULL REFERENCES campaigns (id),
    lab_id        BIGINT NOT NULL REFERENCES labs (id),
    quantity      BIGINT NOT NULL CHECK (quantity > 0),
    items_left    BIGINT NOT NULL CHECK (items_left >= 0 AND items_left <= quantity),
    assembled_by  BIGINT NOT NULL REFERENCES users (id),
    assembled_at  BIGINT NOT NULL
);
CREATE INDEX campaign_assemblies_campaign ON campaign_assemblies (campaign_id, lab_id);
CREATE TABLE campaign_assembly_parts (
    assembly_id  BIGINT NOT NULL REFERENCES campaign_assemblies (id),
    batch_id     BIGINT NOT NULL REFERENCES campaign_batches (id),
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (assembly_id, batch_id)
);
CREATE INDEX campaign_assembly_parts_batch ON campaign_assembly_parts (batch_id);
CREATE TABLE campaign_assembly_materials (
    assembly_id  BIGINT NOT NULL REFERENCES campaign_assemblies (id),
    material_id  BIGINT NOT NULL REFERENCES campaign_materials (id),
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (assembly_id, material_id)
);

-- Items handed to a recipient, drawn from assemblies (oldest first).
CREATE TABLE campaign_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    campaign_id   BIGINT NOT NULL REFERENCES campaigns (id),
    request_id    BIGINT NOT NULL REFERENCES campaign_requests (id),
    lab_id        BIGINT NOT NULL REFERENCES labs (id),
    quantity      BIGINT NOT NULL CHECK (quantity > 0),
    delivered_on  TEXT NOT NULL,
    delivered_by  TEXT NOT NULL,
    recorded_by   BIGINT NOT NULL REFERENCES users (id),
    recorded_at   BIGINT NOT NULL
);
CREATE INDEX campaign_deliveries_campaign ON campaign_deliveries (campaign_id);
CREATE INDEX campaign_deliveries_request ON campaign_deliveries (request_id);
CREATE TABLE campaign_delivery_items (
    delivery_id  BIGINT NOT NULL REFERENCES campaign_deliveries (id),
    assembly_id  BIGINT NOT NULL REFERENCES campaign_assemblies (id),
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (delivery_id, assembly_id)
);
CREATE INDEX campaign_delivery_items_assembly ON campaign_delivery_items (assembly_id);
