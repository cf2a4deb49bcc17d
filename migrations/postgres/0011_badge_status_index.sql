-- Each badge gets its place in the lab's revocation list (W3C Bitstring Status List): the
-- bit at this index is set when the badge is withdrawn. Badges already awarded take their
-- id; new ones the next free index (`Store::insert_badge`).
ALTER TABLE badges ADD COLUMN status_index BIGINT;
UPDATE badges SET status_index = id;
CREATE UNIQUE INDEX badges_status_index ON badges (status_index);
