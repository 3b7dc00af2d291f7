-- Placeholder on branch h16 only: number 0004 belongs to another change being merged
-- beside this one. The lead replaces this file with that change's 0004 when merging;
-- it makes no change to the schema.
SELECT 1;
