//! The classification table: real-world statements and the class PostgreSQL's semantics
//! require. A statement that could write is never `R`; `U` marks what sqlparser 0.63
//! cannot parse (primary, counted), whatever the statement would do.

use super::*;

const R: Class = Class::Read;
const W: Class = Class::Write;
const B: Class = Class::ReadOnlyBegin;
const U: Class = Class::Unparsed;
const HP: Class = Class::Hinted(Route::Primary);
const HR: Class = Class::Hinted(Route::Replica);

/// Plain reads, as people and tools write them.
const READS: &[(&str, Class)] = &[
    ("SELECT 1", R),
    ("select 1;", R),
    ("SELECT now()", R),
    ("SELECT current_user, session_user, current_database()", R),
    ("SELECT version()", R),
    ("SELECT current_setting('port')", R),
    ("SELECT pg_sleep(0.1)", R),
    ("SELECT random(), gen_random_uuid()", R),
    ("SELECT * FROM t", R),
    ("SELECT * FROM ONLY t", R),
    ("SELECT t.* FROM public.t", R),
    ("SELECT * FROM t WHERE id IN (1, 2, 3)", R),
    ("SELECT * FROM t WHERE id = ANY($1::int[])", R),
    ("SELECT * FROM t WHERE name ILIKE '%x%'", R),
    (r"SELECT * FROM t WHERE a LIKE 'x\_%' ESCAPE '\'", R),
    ("SELECT * FROM t WHERE ts > now() - interval '1 day'", R),
    ("SELECT * FROM t WHERE x BETWEEN SYMMETRIC 1 AND 2", U),
    ("SELECT x IS DISTINCT FROM y FROM t", R),
    ("SELECT EXISTS (SELECT 1 FROM t WHERE id = 1)", R),
    ("SELECT (SELECT max(id) FROM u) AS m", R),
    ("SELECT coalesce(max(id), 0) + 1 FROM t", R),
    ("SELECT greatest(1, 2), least(1, 2), nullif(3, 0)", R),
    ("SELECT substring(name FROM 1 FOR 3) FROM t", R),
    ("SELECT extract(epoch FROM now())", R),
    ("SELECT position('a' IN 'abc'), trim(both ' ' FROM ' a ')", R),
    ("SELECT CAST(x AS text), x::text[] FROM t", R),
    ("SELECT '2024-01-01'::date + 1, interval '1 hour' * 2", R),
    ("SELECT '{\"a\":1}'::jsonb ->> 'a'", R),
    ("SELECT a #>> '{b,c}', a @> '{1}' FROM t", R),
    ("SELECT * FROM t WHERE tsv @@ to_tsquery('english', 'cat & dog')", R),
    ("SELECT date_trunc('day', ts), count(*) FROM events GROUP BY 1 ORDER BY 1", R),
    ("SELECT a, b, sum(c) FROM t GROUP BY ROLLUP (a, b)", R),
    ("SELECT array_agg(DISTINCT x ORDER BY x), string_agg(name, ', ') FROM t", R),
    ("SELECT count(*) FILTER (WHERE x > 1) FROM t", R),
    ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t", R),
    ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC NULLS LAST", R),
    ("SELECT * FROM t ORDER BY id LIMIT 10 OFFSET 20", R),
    ("SELECT 1 FROM t OFFSET 1 ROWS FETCH NEXT 1 ROW WITH TIES", R),
    ("SELECT * FROM t1 NATURAL JOIN t2", R),
    ("SELECT * FROM t1 FULL OUTER JOIN t2 USING (id)", R),
    ("SELECT * FROM t LEFT JOIN LATERAL (SELECT * FROM u WHERE u.t_id = t.id ORDER BY u.ts DESC LIMIT 1) last ON true", R),
    ("SELECT x FROM t INTERSECT SELECT x FROM u", R),
    ("SELECT x FROM t EXCEPT ALL SELECT x FROM u", R),
    ("SELECT * FROM generate_series(1, 10) WITH ORDINALITY AS g(n, i)", R),
    ("SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY", R),
    ("SELECT * FROM t TABLESAMPLE SYSTEM (10)", R),
    ("SELECT * FROM json_table('{}', '$' COLUMNS (a int PATH '$.a')) jt", R),
    ("SELECT jsonb_agg(t) FROM t", R),
    ("SELECT * FROM pg_stat_activity WHERE state = 'active'", R),
    ("SELECT pg_size_pretty(pg_database_size(current_database()))", R),
    ("VALUES (1), (2)", R),
    ("VALUES (1, 'a') ORDER BY 1", R),
    ("SELECT * FROM (VALUES (1), (2)) v(x)", R),
    ("SELECT $tag$it's$tag$", R),
];

/// Window functions and CTEs that only read.
const WINDOWS_AND_CTES: &[(&str, Class)] = &[
    ("SELECT id, rank() OVER (PARTITION BY dept ORDER BY salary DESC) FROM emp", R),
    ("SELECT row_number() OVER w FROM t WINDOW w AS (PARTITION BY a)", R),
    ("SELECT lag(x) OVER (ORDER BY ts), lead(x, 2) OVER (ORDER BY ts) FROM t", R),
    ("SELECT sum(x) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM t", R),
    ("SELECT avg(x) OVER (PARTITION BY g ORDER BY ts RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) FROM t", R),
    ("SELECT sum(x) OVER (ORDER BY y GROUPS BETWEEN 1 PRECEDING AND CURRENT ROW EXCLUDE TIES) FROM t", U),
    ("WITH x AS (SELECT 1 AS a) SELECT * FROM x", R),
    ("WITH x AS MATERIALIZED (SELECT * FROM t), y AS NOT MATERIALIZED (SELECT * FROM x) SELECT * FROM y", R),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", R),
    ("WITH RECURSIVE tree AS (SELECT id, parent_id FROM nodes WHERE id = 1 UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN tree ON n.parent_id = tree.id) SELECT count(*) FROM tree", R),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET ord SELECT * FROM r LIMIT 5", U),
    ("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM a, b", R),
];

/// What ORMs and drivers send.
const ORMS: &[(&str, Class)] = &[
    // Django
    (r#"SELECT "auth_user"."id", "auth_user"."password", "auth_user"."username" FROM "auth_user" WHERE "auth_user"."username" = 'alice' LIMIT 21"#, R),
    (r#"SELECT COUNT(*) AS "__count" FROM "app_item""#, R),
    (r#"SELECT (1) AS "a" FROM "app_item" WHERE "app_item"."id" = 5 LIMIT 1"#, R),
    (r#"SELECT "app_order"."id" FROM "app_order" WHERE "app_order"."id" = 1 FOR UPDATE"#, W),
    (r#"SELECT "app_job"."id" FROM "app_job" WHERE "app_job"."done" = false LIMIT 10 FOR UPDATE OF "app_job" SKIP LOCKED"#, W),
    (r#"SELECT "app_order"."id" FROM "app_order" WHERE "app_order"."id" = 1 FOR NO KEY UPDATE"#, U),
    (r#"INSERT INTO "app_item" ("name", "qty") VALUES ('x', 1) RETURNING "app_item"."id""#, W),
    (r#"UPDATE "app_item" SET "qty" = ("app_item"."qty" + 1) WHERE "app_item"."id" = 5"#, W),
    (r#"DELETE FROM "app_item" WHERE "app_item"."id" IN (1, 2)"#, W),
    (r#"SAVEPOINT "s140234_x1""#, W),
    (r#"RELEASE SAVEPOINT "s140234_x1""#, W),
    (r#"ROLLBACK TO SAVEPOINT "s140234_x1""#, W),
    ("SELECT c.relname, CASE WHEN c.relispartition THEN 'p' WHEN c.relkind IN ('m', 'v') THEN 'v' ELSE 't' END FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v') AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND pg_catalog.pg_table_is_visible(c.oid)", R),
    (r#"CREATE TABLE "django_migrations" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "app" varchar(255) NOT NULL, "applied" timestamp with time zone NOT NULL)"#, W),
    // Rails
    (r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2"#, R),
    (r#"SELECT 1 AS one FROM "users" WHERE "users"."email" = $1 LIMIT $2"#, R),
    (r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2 FOR UPDATE"#, W),
    (r#"INSERT INTO "users" ("name", "created_at", "updated_at") VALUES ($1, $2, $3) RETURNING "id""#, W),
    (r#"INSERT INTO "users" ("id","name") VALUES (1, 'a') ON CONFLICT ("id") DO UPDATE SET "name"=excluded."name" RETURNING "id""#, W),
    (r#"SELECT "posts".* FROM "posts" /*application:Blog,controller:posts,action:index*/"#, R),
    (r#"/*action='index',application='Blog'*/ SELECT "posts".* FROM "posts" WHERE "posts"."id" = $1"#, R),
    ("SELECT pg_try_advisory_lock(4280564357683216280)", W),
    ("SELECT pg_advisory_unlock(4280564357683216280)", W),
    ("SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE a.attrelid = '\"users\"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", R),
    ("SET client_min_messages TO 'warning'", W),
    ("SET intervalstyle = iso_8601", W),
    ("SHOW search_path", R),
    // SQLAlchemy
    ("SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.id = 5", R),
    ("SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = 'users' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'", R),
    ("select pg_catalog.version()", R),
    ("select current_schema()", R),
    ("show standard_conforming_strings", R),
    ("SELECT CAST('test plain returns' AS VARCHAR(60)) AS anon_1", R),
    ("SELECT users.id FROM users WHERE users.id = 1 FOR UPDATE NOWAIT", W),
    ("SELECT users.id FROM users WHERE users.id = 1 FOR SHARE", W),
    ("SELECT nextval('users_id_seq')", W),
    // Prisma
    (r#"SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" WHERE ("public"."User"."email" = $1 AND 1=1) LIMIT $2 OFFSET $3"#, R),
    (r#"SELECT COUNT(*) AS "_count._all" FROM (SELECT "public"."Post"."id" FROM "public"."Post" WHERE 1=1 OFFSET $1) AS "sub""#, R),
    (r#"INSERT INTO "public"."User" ("email","name") VALUES ($1,$2) RETURNING "public"."User"."id""#, W),
    ("SELECT pg_advisory_lock(72707369)", W),
    // Hibernate / pgjdbc, Sequelize, sqlc
    ("select u1_0.id,u1_0.name from users u1_0 where u1_0.id=$1", R),
    ("select nextval('users_seq')", W),
    ("SET application_name = 'PostgreSQL JDBC Driver'", W),
    ("show transaction_read_only", W),
    ("SHOW in_hot_standby", W),
    (r#"INSERT INTO "Users" ("id","name","createdAt","updatedAt") VALUES (DEFAULT,$1,$2,$3) RETURNING "id","name","createdAt","updatedAt";"#, W),
    ("-- name: GetAuthor :one\nSELECT id, name, bio FROM authors WHERE id = $1 LIMIT 1", R),
    ("-- name: CreateAuthor :one\nINSERT INTO authors (name, bio) VALUES ($1, $2) RETURNING *", W),
];

/// Locking clauses, SELECT INTO, data-modifying CTEs: reads in shape, writes in effect.
const HIDDEN_WRITES: &[(&str, Class)] = &[
    ("SELECT * FROM t FOR UPDATE", W),
    ("SELECT * FROM t WHERE id = 1 FOR SHARE OF t", W),
    ("SELECT * FROM t FOR KEY SHARE", U),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE SKIP LOCKED)", W),
    ("WITH locked AS (SELECT id FROM jobs WHERE state = 'new' LIMIT 1 FOR UPDATE SKIP LOCKED) SELECT * FROM locked", W),
    ("WITH x AS (SELECT * FROM t) SELECT * FROM x FOR UPDATE", W),
    ("(SELECT 1) UNION (SELECT 2 FOR UPDATE)", U),
    ("SELECT * INTO new_t FROM t", W),
    ("SELECT * INTO TEMP new_t FROM t", W),
    ("SELECT id, name INTO UNLOGGED TABLE copy_t FROM t WHERE id > 10", W),
    ("WITH x AS (SELECT 1 AS a) SELECT * INTO y FROM x", W),
    ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", W),
    ("WITH x AS (SELECT 1), y AS (DELETE FROM t WHERE id IN (SELECT * FROM x) RETURNING id) SELECT * FROM y", W),
    ("WITH moved AS (DELETE FROM queue WHERE id = 1 RETURNING *) INSERT INTO done SELECT * FROM moved", W),
    ("WITH u AS (UPDATE t SET a = 1 WHERE false RETURNING a) SELECT 1", W),
    ("SELECT * FROM (WITH z AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM z) q", W),
    ("SELECT * FROM t WHERE id IN (WITH d AS (DELETE FROM u RETURNING id) SELECT id FROM d)", W),
    ("WITH a AS (SELECT 1), b AS (WITH c AS (INSERT INTO t DEFAULT VALUES RETURNING id) SELECT id FROM c) SELECT * FROM a, b", W),
    ("COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", W),
];

/// Calls of functions that write, at every depth and in every clause.
const WRITE_FUNCTIONS: &[(&str, Class)] = &[
    ("SELECT nextval('s')", W),
    ("SELECT NEXTVAL('s')", W),
    ("SELECT pg_catalog.nextval('s')", W),
    (r#"SELECT "nextval"('s')"#, W),
    ("SELECT setval('s', 42, true)", W),
    ("SELECT currval('s'), lastval()", W),
    ("SELECT id, nextval('s') FROM t", W),
    ("SELECT * FROM t WHERE id = (SELECT nextval('s'))", W),
    (
        "SELECT * FROM t WHERE a IN (SELECT lo_import('/etc/hosts'))",
        W,
    ),
    ("SELECT * FROM t WHERE a = ANY (SELECT txid_current())", W),
    (
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE pg_advisory_lock(1) IS NOT NULL)",
        W,
    ),
    ("SELECT * FROM t ORDER BY setval('s', 1)", W),
    ("SELECT * FROM t GROUP BY 1 HAVING max(nextval('s')) > 0", W),
    ("SELECT * FROM t JOIN u ON u.id = nextval('s')", W),
    ("SELECT x FROM t LIMIT (SELECT nextval('s'))", W),
    ("SELECT ARRAY(SELECT nextval('s'))", W),
    ("SELECT CASE WHEN a THEN nextval('s') END FROM t", W),
    ("SELECT coalesce(a, nextval('s')) FROM t", W),
    ("SELECT * FROM t WINDOW w AS (PARTITION BY nextval('s'))", W),
    ("SELECT 1 UNION SELECT nextval('s')", W),
    ("SELECT * FROM nextval('s')", W),
    ("SELECT * FROM t, LATERAL nextval('s') n", W),
    ("SELECT * FROM generate_series(1, nextval('s'))", W),
    (
        "WITH ids AS (SELECT nextval('s') AS id FROM generate_series(1, 3)) SELECT * FROM ids",
        W,
    ),
    ("VALUES (nextval('s'))", W),
    ("SELECT pg_advisory_xact_lock(42)", W),
    ("SELECT pg_try_advisory_xact_lock_shared(1, 2)", W),
    ("SELECT pg_advisory_unlock_all()", W),
    ("SELECT pg_notify('jobs', 'new')", W),
    ("SELECT set_config('search_path', 'app', false)", W),
    ("SELECT pg_catalog.set_config('search_path', '', false)", W),
    ("SELECT lo_create(0)", W),
    ("SELECT lo_unlink(16401)", W),
    ("SELECT lo_put(16401, 0, '\\xaa')", W),
    ("SELECT lo_from_bytea(0, '\\xdeadbeef')", W),
    ("SELECT txid_current()", W),
    ("SELECT pg_current_xact_id()", W),
    ("SELECT pg_current_wal_lsn()", W),
    ("SELECT pg_switch_wal()", W),
    ("SELECT pg_create_restore_point('before_migration')", W),
    ("SELECT pg_promote()", W),
    ("SELECT pg_reload_conf()", W),
    (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
        W,
    ),
    ("SELECT pg_cancel_backend(12345)", W),
    ("SELECT pg_is_in_recovery()", W),
    ("SELECT dblink_exec('dbname=other', 'DELETE FROM t')", W),
    (
        "SELECT * FROM dblink('dbname=other', 'SELECT 1') AS r(a int)",
        W,
    ),
    ("SELECT pg_stat_reset()", W),
    (
        "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
        W,
    ),
    (
        "SELECT count(*) FROM t WHERE pg_catalog.pg_try_advisory_lock(t.id)",
        W,
    ),
];

/// Names that look like write functions but are not calls.
const LOOKALIKES: &[(&str, Class)] = &[
    ("SELECT nextval FROM t", R),
    (r#"SELECT "nextval", "setval" FROM t"#, R),
    ("SELECT 'nextval(''s'')'", R),
    ("SELECT $$SELECT nextval('s')$$", R),
    (r#"SELECT * FROM "pg_advisory_lock""#, R),
    ("SELECT * FROM t WHERE note = 'DELETE FROM t'", R),
    (
        "SELECT lower(name), lpad(code, 5, '0'), log(2, 8) FROM t",
        R,
    ),
    ("SELECT pg_sequence_last_value('s')", R),
];

/// Transaction control, session state, cursors and prepared statements.
const TRANSACTIONS_AND_SESSION: &[(&str, Class)] = &[
    ("BEGIN", W),
    ("BEGIN TRANSACTION", W),
    ("START TRANSACTION", W),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", W),
    ("BEGIN READ WRITE", W),
    ("BEGIN READ ONLY", B),
    ("begin read only", B),
    ("BEGIN TRANSACTION READ ONLY", B),
    ("BEGIN WORK READ ONLY", B),
    ("START TRANSACTION READ ONLY", B),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", B),
    (
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED READ ONLY",
        B,
    ),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", W),
    ("BEGIN READ ONLY, READ WRITE", W),
    ("BEGIN READ WRITE, READ ONLY", W),
    ("BEGIN READ ONLY DEFERRABLE", U),
    ("COMMIT", W),
    ("END", W),
    ("ROLLBACK", W),
    ("ABORT", W),
    ("PREPARE TRANSACTION 'tx1'", U),
    ("COMMIT PREPARED 'tx1'", U),
    ("SET TRANSACTION READ ONLY", W),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", W),
    ("SET default_transaction_read_only = on", W),
    ("SET search_path TO app, public", W),
    ("SET LOCAL statement_timeout = '5s'", W),
    ("SET TIME ZONE 'UTC'", W),
    ("SET ROLE app_reader", W),
    ("RESET ALL", W),
    ("DISCARD ALL", W),
    ("DECLARE c CURSOR FOR SELECT * FROM t", W),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", W),
    ("FETCH 10 FROM c", W),
    ("CLOSE c", W),
    ("PREPARE q (int) AS SELECT * FROM t WHERE id = $1", W),
    ("EXECUTE q(1)", W),
    ("DEALLOCATE q", W),
    ("LISTEN jobs", W),
    ("UNLISTEN *", W),
    ("NOTIFY jobs, 'payload'", W),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", W),
];

/// DDL, maintenance, DO, CALL and COPY.
const DDL_AND_UTILITY: &[(&str, Class)] = &[
    ("CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)", W),
    ("CREATE TEMP TABLE tmp (id int)", W),
    ("CREATE UNLOGGED TABLE IF NOT EXISTS cache (k text, v jsonb)", W),
    ("CREATE TABLE t2 AS SELECT * FROM t", W),
    ("CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t", W),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", U),
    ("CREATE VIEW v AS SELECT * FROM t", W),
    ("CREATE INDEX CONCURRENTLY idx_t_name ON t (lower(name))", W),
    ("CREATE UNIQUE INDEX ON t USING btree (id) WHERE deleted_at IS NULL", W),
    ("ALTER TABLE t ADD COLUMN note text DEFAULT ''", W),
    ("ALTER TABLE t RENAME COLUMN note TO memo", W),
    ("DROP TABLE IF EXISTS t CASCADE", W),
    ("TRUNCATE t RESTART IDENTITY", W),
    ("CREATE SEQUENCE s START 100", W),
    ("ALTER SEQUENCE s RESTART WITH 1", U),
    ("CREATE SCHEMA app", W),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", W),
    ("CREATE ROLE reader LOGIN", W),
    ("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader", W),
    ("REVOKE ALL ON t FROM PUBLIC", W),
    ("COMMENT ON TABLE t IS 'people'", W),
    ("CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS $$ SELECT a + b $$", W),
    ("CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN NEW.ts := now(); RETURN NEW; END $fn$", W),
    ("CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f()", W),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')", W),
    ("DO $$ BEGIN PERFORM 1; END $$", U),
    ("DO LANGUAGE plpgsql $$ BEGIN INSERT INTO t VALUES (1); END $$", U),
    ("CALL refresh_stats(1)", W),
    ("CALL app.archive_old('2024-01-01'::date)", W),
    ("VACUUM (ANALYZE) t", U),
    ("VACUUM t", W),
    ("ANALYZE t", W),
    ("CHECKPOINT", U),
    ("REINDEX TABLE t", U),
    ("CLUSTER t USING t_pkey", U),
    ("ALTER SYSTEM SET work_mem = '64MB'", U),
    ("COPY t FROM STDIN", W),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", W),
    ("COPY t FROM '/tmp/t.csv'", W),
    ("COPY t TO '/tmp/t.csv'", W),
    ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", W),
    ("COPY t TO STDOUT", R),
    ("COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)", R),
    ("COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", R),
    ("COPY (SELECT nextval('s')) TO STDOUT", W),
    ("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", W),
    ("INSERT INTO t SELECT * FROM u", W),
    ("INSERT INTO t DEFAULT VALUES", W),
    ("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", W),
    ("DELETE FROM t USING u WHERE t.id = u.id", W),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, s.a)", W),
];

/// SHOW and EXPLAIN.
const SHOW_AND_EXPLAIN: &[(&str, Class)] = &[
    ("SHOW ALL", R),
    ("SHOW server_version", R),
    ("SHOW TRANSACTION ISOLATION LEVEL", R),
    ("SHOW default_transaction_read_only", W),
    ("EXPLAIN SELECT * FROM t", R),
    ("EXPLAIN VERBOSE SELECT * FROM t", R),
    (
        "EXPLAIN (COSTS off, FORMAT json) SELECT * FROM t WHERE id = 1",
        R,
    ),
    ("EXPLAIN WITH x AS (SELECT 1) SELECT * FROM x", R),
    ("EXPLAIN ANALYZE SELECT * FROM t", W),
    ("EXPLAIN ANALYZE VERBOSE DELETE FROM t", W),
    ("EXPLAIN (ANALYZE) SELECT 1", W),
    ("EXPLAIN (ANALYZE false) SELECT 1", W),
    (
        "EXPLAIN (FORMAT JSON, ANALYZE true, BUFFERS) INSERT INTO t VALUES (1)",
        W,
    ),
    ("EXPLAIN ANALYSE SELECT 1", U),
    ("EXPLAIN INSERT INTO t VALUES (1)", W),
    ("EXPLAIN SELECT nextval('s')", W),
    ("EXPLAIN SELECT * FROM t FOR UPDATE", W),
    ("EXPLAIN EXECUTE q(1)", W),
];

/// Comments, quoting and lexing corners where a parser that splits statements wrongly
/// would hide a write.
const LEXING: &[(&str, Class)] = &[
    ("/* leading */ SELECT 1", R),
    ("-- comment\nSELECT 1", R),
    ("SELECT /* inner */ 1 -- trailing", R),
    ("SELECT 1 -- ; DELETE FROM t", R),
    ("SELECT 1 --\n; DELETE FROM t", W),
    ("SELECT '--'; DELETE FROM t", W),
    ("SELECT '/*'; DELETE FROM t; -- */", W),
    ("SELECT 'a -- not a comment', '/* nor this */'", R),
    ("/* /* nested */ DELETE FROM t; */ SELECT 1", R),
    ("/* /* nested */ SELECT 1; */ DELETE FROM t", W),
    ("SELECT 1 */* c */ 2", R),
    (r"SELECT '\'; DELETE FROM t; --'", W),
    (r"SELECT E'\''; DELETE FROM t; --'", W),
    (r"SELECT e'\\'; DELETE FROM t; --'", W),
    (r"SELECT E'a\nb', E'\x41'", R),
    ("SELECT 'it''s'", R),
    ("SELECT $$ ; DELETE FROM t; $$", R),
    ("SELECT $a$ ; DELETE FROM t; $a$", R),
    ("SELECT $a$ $b$ ; DELETE FROM t; $b$ $a$", R),
    ("SELECT $_$ x $_$; DELETE FROM t", W),
    ("SELECT 1 AS x$$; DELETE FROM t; --$$", W),
    ("SELECT 1 AS x$a$; DELETE FROM t; --$a$", W),
    (r#"SELECT "a"";DELETE FROM t" FROM t"#, R),
    (r#"SELECT "dELETE" FROM "Update""#, R),
    (r#"SELECT 1 AS "weird ""name""""#, R),
    ("select * from T where \"Name\" = 'O''Brien'", R),
    ("SELECT U&'\\0041'", R),
    ("SELECT 'a'\n'b'", R),
    ("\n\t SELECT 1 \n", R),
    ("SELECT $A$ x $a$; DELETE FROM t; --$A$", R),
    // sqlparser reads a dollar quote tagged `1`; PostgreSQL reads `$1` then a lone `$`, a
    // syntax error that stops the whole string before anything runs.
    ("SELECT $1$; DELETE FROM t; $1$", R),
    ("SELECT 1 /* unterminated; DELETE FROM t", U),
    ("SELECT 1; /* unterminated", U),
    // Two strings with standard_conforming_strings on (see the module doc for off).
    (r"SELECT 'a\' , '; DELETE FROM t; --'", R),
];

/// Several statements in one simple-protocol Query.
const MULTI_STATEMENT: &[(&str, Class)] = &[
    ("SELECT 1; SELECT 2", R),
    ("SELECT 1;;SELECT 2;", R),
    ("SELECT 1; INSERT INTO t VALUES (1)", W),
    ("INSERT INTO t VALUES (1); SELECT 1", W),
    ("SELECT 1; SELECT nextval('s')", W),
    ("SELECT * FROM t; VACUUM t", W),
    ("SET search_path = app; SELECT * FROM t", W),
    ("BEGIN; SELECT * FROM t; COMMIT;", W),
    ("BEGIN READ ONLY; SELECT * FROM t", B),
    ("SELECT 1; START TRANSACTION READ ONLY", B),
    ("BEGIN READ ONLY; SELECT * FROM t; COMMIT", W),
    ("BEGIN READ ONLY; UPDATE t SET a = 1", W),
    ("SELECT 1; DELETE FROM t WHERE false", W),
    ("SELECT 1; garbage here", U),
];

/// Empty texts, junk, and what sqlparser 0.63 cannot parse although PostgreSQL can.
const EMPTY_AND_JUNK: &[(&str, Class)] = &[
    ("", R),
    (";", R),
    ("   ", R),
    ("-- only a comment", R),
    ("SELEC 1", U),
    ("hello world", U),
    ("SELECT * FROM", U),
    ("\\d t", U),
    ("SELECT (1", U),
    ("INSERT INTO", U),
    ("SELECT 'unterminated", U),
    ("\u{1}\u{2}\u{3}", U),
    ("{}", U),
    ("TABLE t", U),
    ("SELECT x FROM t WHERE x ISNULL", U),
    ("SELECT * FROM ROWS FROM (generate_series(1, 3))", U),
    ("SELECT xmlelement(name foo)", U),
    ("SELECT * FROM t FOR READ ONLY", U),
];

/// Leading-comment hints, which decide before parsing.
const HINTS: &[(&str, Class)] = &[
    ("/* weir:primary */ SELECT 1", HP),
    ("/* weir:replica */ SELECT * FROM t", HR),
    ("/* weir:replica */ SELECT * FROM t FOR UPDATE", HR),
    ("/* weir:replica */ junk that does not parse", HR),
    ("-- app\n/* weir:primary */ SELECT 1", HP),
    ("/*weir:replica*/SELECT 1", HR),
    ("SELECT 1 /* weir:replica */", R),
    ("SELECT * FROM t FOR UPDATE /* weir:replica */", W),
];

/// Every table above.
fn table() -> impl Iterator<Item = &'static (&'static str, Class)> {
    [
        READS,
        WINDOWS_AND_CTES,
        ORMS,
        HIDDEN_WRITES,
        WRITE_FUNCTIONS,
        LOOKALIKES,
        TRANSACTIONS_AND_SESSION,
        DDL_AND_UTILITY,
        SHOW_AND_EXPLAIN,
        LEXING,
        MULTI_STATEMENT,
        EMPTY_AND_JUNK,
        HINTS,
    ]
    .into_iter()
    .flatten()
}

#[test]
fn every_statement_in_the_table_gets_its_class() {
    let functions = WriteFunctions::builtin();
    let wrong: Vec<String> = table()
        .filter_map(|(sql, want)| {
            let got = classify(sql, &functions);
            (got != *want).then(|| format!("{sql:?}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_table_is_large_enough() {
    let n = table().count();
    assert!(n >= 150, "{n}");
}

#[test]
fn only_reads_and_replica_hints_route_to_a_replica() {
    for (sql, class) in table() {
        let to_replica = matches!(*class, Class::Read | Class::ReadOnlyBegin | HR);
        assert_eq!(class.route() == Route::Replica, to_replica, "{sql:?}");
    }
}

#[test]
fn caller_functions_make_writes_and_read_overrides_make_reads() {
    let functions = WriteFunctions::new(["app.audit_log"], ["currval"]);
    assert_eq!(classify("SELECT audit_log('x')", &functions), W);
    assert_eq!(classify("SELECT * FROM app.AUDIT_LOG('x')", &functions), W);
    assert_eq!(
        classify("SELECT * FROM t WHERE f(audit_log(1))", &functions),
        W
    );
    assert_eq!(classify("SELECT currval('s')", &functions), R);
    assert_eq!(classify("SELECT nextval('s')", &functions), W);
    assert_eq!(
        classify("SELECT audit_log('x')", &WriteFunctions::builtin()),
        R
    );
}

#[test]
fn deep_or_huge_input_is_refused_not_a_crash() {
    let functions = WriteFunctions::builtin();
    let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(classify(&deep, &functions), U);
    let wide = format!("SELECT {}", vec!["1"; 100_000].join(", "));
    assert_eq!(classify(&wide, &functions), R);
}

#[test]
fn the_cache_counts_hits_and_misses_in_batches() {
    let mut cache = ClassCache::default();
    let functions = WriteFunctions::builtin();
    assert_eq!(
        cache.classify("SELECT 1", &functions).route(),
        Route::Replica
    );
    assert_eq!(
        cache.classify("SELECT 2", &functions).route(),
        Route::Replica
    );
    assert_eq!(
        cache.classify("SELECT * FROM t", &functions).route(),
        Route::Replica
    );
    assert_eq!(cache.take_counts(4), None, "not a batch yet");
    assert_eq!(cache.take_counts(3), Some((1, 2)));
    assert_eq!(cache.take_counts(1), None, "taken counts start again");
}
