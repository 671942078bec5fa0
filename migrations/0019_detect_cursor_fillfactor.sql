-- The detector rewrites the cursor of every vehicle it judged at each tick: at 2,000 vehicles
-- at 1 Hz, 2,000 rows of about 400 bytes a second. Packed full, no page had room for a row's
-- new version, so no update was HOT: each moved the row to a new page and added an index
-- entry, and between two vacuums the table and its index grew by about 0.4 MB a second (70 MB
-- after 3 minutes), which every tick's cursor lookups then walked. Pages filled to 40 % keep
-- room beside each row for the next version; pruning on the next read frees the one before, so
-- updates stay HOT and the table stays at its live size without waiting for a vacuum. The
-- setting applies to pages written from now on: an existing table converges as its rows are
-- next updated (or at once with VACUUM FULL walkthrough_detect_cursors).
ALTER TABLE walkthrough_detect_cursors SET (fillfactor = 40);
