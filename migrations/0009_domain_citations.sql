-- Reference texts cite the project's own docs/domain.md. Migrations 0003 and 0004 (and the
-- service's high-emitter rule text) used to cite a reference file that ships with nobody's
-- installation; the section numbers are unchanged, only the document's name. Fresh installs
-- seed the new text directly; this rewrites rows seeded (or copied from them) before.
-- Idempotent: a second run matches no row. Portable PostgreSQL, with or without TimescaleDB.

-- Seeded reference tables (every text column a seed or an operator may have given a citation).
UPDATE thresholds SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE thresholds SET note = replace(note, 'DOMAIN.md', 'docs/domain.md')
    WHERE note LIKE '%DOMAIN.md%';

UPDATE plate_colors SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';

UPDATE rs_limits SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE rs_limits SET note = replace(note, 'DOMAIN.md', 'docs/domain.md')
    WHERE note LIKE '%DOMAIN.md%';

UPDATE rs_gates SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE rs_gates SET note = replace(note, 'DOMAIN.md', 'docs/domain.md')
    WHERE note LIKE '%DOMAIN.md%';

UPDATE rs_rule_params SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';

UPDATE substances SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE substances SET note = replace(note, 'DOMAIN.md', 'docs/domain.md')
    WHERE note LIKE '%DOMAIN.md%';

UPDATE emergency_tiers SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE emergency_tiers SET note = replace(note, 'DOMAIN.md', 'docs/domain.md')
    WHERE note LIKE '%DOMAIN.md%';

-- Texts copied from those tables (and from the high-emitter rule's description) into results
-- the API also returns: high-emitter plates and alerts.
UPDATE rs_high_emitters SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
UPDATE alerts SET source = replace(source, 'DOMAIN.md', 'docs/domain.md')
    WHERE source LIKE '%DOMAIN.md%';
