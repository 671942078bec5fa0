-- Reference texts cite the project's own docs/domain.md. Migrations 0003 and 0004 (and the
-- service's high-emitter rule text) used to cite a reference file that ships with nobody's
-- installation; the section numbers are unchanged, only the document's name. Fresh installs
-- seed the new text directly; this rewrites rows seeded (or copied from them) before.
-- Idempotent: a second run matches no row. Portable PostgreSQL, with or without TimescaleDB.

-- Seeded reference tables (every text column a seed or an operator may have given a citation).
UPDATE thresholds SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE thresholds SET note = regexp_replace(note, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE note ~ 'DOMAIN\.md';

UPDATE plate_colors SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';

UPDATE rs_limits SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE rs_limits SET note = regexp_replace(note, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE note ~ 'DOMAIN\.md';

UPDATE rs_gates SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE rs_gates SET note = regexp_replace(note, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE note ~ 'DOMAIN\.md';

UPDATE rs_rule_params SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';

UPDATE substances SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE substances SET note = regexp_replace(note, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE note ~ 'DOMAIN\.md';

UPDATE emergency_tiers SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE emergency_tiers SET note = regexp_replace(note, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE note ~ 'DOMAIN\.md';

-- Texts copied from those tables (and from the high-emitter rule's description) into results
-- the API also returns: high-emitter plates and alerts.
UPDATE rs_high_emitters SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
UPDATE alerts SET source = regexp_replace(source, 'DOMAIN\.md', 'docs/domain.md', 'g')
    WHERE source ~ 'DOMAIN\.md';
