-- The name of what a campaign makes, as sentences need it: its plural ("visières") and its
-- grammatical gender, which French participles agree with ("12 visières livrées"). The
-- campaigns made before get the regular plural (an "s") and the masculine; a manager
-- corrects them on the campaign's form.
ALTER TABLE campaigns ADD COLUMN item_plural TEXT NOT NULL DEFAULT '';
ALTER TABLE campaigns ADD COLUMN item_gender TEXT NOT NULL DEFAULT 'masculine'
    CHECK (item_gender IN ('feminine', 'masculine'));
UPDATE campaigns SET item_plural = item || 's';
