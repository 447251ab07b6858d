-- Nothing to undo: 000014's down drops the columns.
SELECT 1;
