-- Every table of the store (`backend::Table`) as rows of one table: keys and values as
-- bytes, ordered byte-wise as LMDB orders them. Values are SX wire text.
CREATE TABLE sx_records (
    tbl   text  NOT NULL,
    key   bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tbl, key)
);
