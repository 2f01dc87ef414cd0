//! Named prepared statements in transaction mode: prepared once by a client, used in
//! later transactions that land on other server connections.

mod common;

use common::{config_toml, fresh_database, sqlstate, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_survive_changing_servers() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(
        &db,
        "size = 3\nmax_prepared_statements = 4",
        "",
    ))
    .await;
    let mut tasks = Vec::new();
    for i in 0..30i32 {
        let url = proxy.url(common::USER, common::PASSWORD, &db);
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            // Two statements per client, prepared once; 6 distinct texts overall (> 4 per server).
            let add = c
                .prepare(&format!("SELECT $1::int + {}", i % 3))
                .await
                .expect("prepare add");
            let echo = c
                .prepare(&format!("SELECT $1::text || '-{}'", i % 3))
                .await
                .expect("prepare echo");
            for j in 0..20i32 {
                let row = c.query_one(&add, &[&j]).await.expect("execute add");
                assert_eq!(row.get::<_, i32>(0), j + i % 3);
                let row = c
                    .query_one(&echo, &[&format!("{i}:{j}")])
                    .await
                    .expect("execute echo");
                assert_eq!(row.get::<_, String>(0), format!("{i}:{j}-{}", i % 3));
                // Ad-hoc statements (prepared and closed by tokio-postgres each time) too.
                let row = c
                    .query_one("SELECT $1::bigint * 2", &[&(j as i64)])
                    .await
                    .expect("adhoc");
                assert_eq!(row.get::<_, i64>(0), 2 * j as i64);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn describe_errors_and_pipelines_behave_like_postgres() {
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    let c = proxy.client(&db).await;
    c.batch_execute("CREATE TABLE p (id int primary key, name text)")
        .await
        .expect("create");
    let insert = c
        .prepare("INSERT INTO p VALUES ($1, $2) RETURNING id")
        .await
        .expect("prepare");
    // Describe of a re-prepared statement still gives the right types.
    assert_eq!(insert.params().len(), 2);
    assert_eq!(insert.columns()[0].name(), "id");
    // Another client holds one of the two servers in a transaction, so the statement
    // prepared above (on that server, maybe) must be prepared again on the other.
    let other = proxy.client(&db).await;
    other.batch_execute("BEGIN").await.expect("begin");
    c.query_one(&insert, &[&1i32, &"one"])
        .await
        .expect("insert 1");
    // A failing execution skips the rest of its pipeline but leaves the statement usable.
    let err = c
        .query_one(&insert, &[&1i32, &"dup"])
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
    let (a, b) = tokio::join!(
        c.query_one(&insert, &[&2i32, &"two"]),
        c.query_one(&insert, &[&3i32, &"three"])
    );
    assert_eq!(a.expect("pipelined 2").get::<_, i32>(0), 2);
    assert_eq!(b.expect("pipelined 3").get::<_, i32>(0), 3);
    // A statement with a syntax error is not remembered.
    let err = c.prepare("SELEC 1").await.expect_err("syntax");
    assert_eq!(sqlstate(&err).as_deref(), Some("42601"));
    other.batch_execute("COMMIT").await.expect("commit");
    // DISCARD ALL forgets the client's statements, as on PostgreSQL.
    c.batch_execute("DISCARD ALL").await.expect("discard");
    let err = c
        .query_one(&insert, &[&4i32, &"four"])
        .await
        .expect_err("gone after DISCARD ALL");
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    assert_eq!(common::psql(&db, "SELECT count(*) FROM p"), "3");
    // Prepared again, it works: weir knows the server dropped it too. Both spellings that
    // drivers send, on a pool of one so the same server is reused.
    for reset in ["DISCARD ALL", "DEALLOCATE ALL"] {
        let again = c
            .prepare("INSERT INTO p VALUES ($1, $2) RETURNING id")
            .await
            .expect("prepare again");
        other
            .batch_execute("BEGIN")
            .await
            .expect("hold the other server");
        let id = if reset == "DISCARD ALL" { 4i32 } else { 5 };
        c.query_one(&again, &[&id, &reset])
            .await
            .expect("re-prepared statement works");
        other.batch_execute("COMMIT").await.expect("release it");
        c.batch_execute(reset).await.expect(reset);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_parse_after_a_schema_change_is_analysed_afresh_on_every_server() {
    // Two servers each hold the statement from before an ALTER TABLE that changes its
    // result. A client that prepares it after the change must get the new columns on both
    // (PostgreSQL would run its own, fresh Parse), never `0A000` "cached plan must not
    // change result type" from a stale copy; and each server keeps one copy, not one per
    // client.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 2", "")).await;
    let (a, b, c) = (
        proxy.client(&db).await,
        proxy.client(&db).await,
        proxy.client(&db).await,
    );
    a.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("table");
    let text = "SELECT *, pg_backend_pid() AS pid, \
                (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'weir\\_%') AS held \
                FROM t";
    // a holds one server while b prepares on the other; then a prepares on its own.
    a.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    let on_b = b.prepare(text).await.expect("prepare on b");
    assert_eq!(b.query_one(&on_b, &[]).await.expect("run on b").len(), 3);
    let on_a = a.prepare(text).await.expect("prepare on a");
    let pid_a: i32 = a.query_one(&on_a, &[]).await.expect("run on a").get("pid");
    a.batch_execute("COMMIT").await.expect("commit");
    b.batch_execute("ALTER TABLE t ADD COLUMN y int DEFAULT 2")
        .await
        .expect("alter");

    let fresh = c.prepare(text).await.expect("prepare after the change");
    let mut pids = std::collections::HashSet::new();
    for _ in 0..3 {
        // While a holds the server on top of the pool, c runs on the other one; then on
        // the one a gives back. So c meets both servers.
        a.batch_execute("BEGIN; SELECT 1").await.expect("begin");
        let beside = c.query_one(&fresh, &[]).await.expect("run beside a");
        a.batch_execute("COMMIT").await.expect("commit");
        let after = c.query_one(&fresh, &[]).await.expect("run after a");
        for row in [beside, after] {
            assert_eq!(row.len(), 4, "the new column is there");
            assert_eq!(row.get::<_, i32>("y"), 2);
            assert_eq!(row.get::<_, i64>("held"), 1, "one copy per server");
            pids.insert(row.get::<_, i32>("pid"));
        }
    }
    assert_eq!(pids.len(), 2, "c ran on both servers");
    assert!(pids.contains(&pid_a));
    proxy.stop().await;
}

#[tokio::test]
async fn a_parse_of_the_same_text_leaves_an_open_portal_alone() {
    // A second Parse of a text replaces the server's copy (Close, then Parse). A client
    // reading a portal made from that copy in pieces must keep reading: PostgreSQL keeps
    // a portal's plan when its statement is closed, and this checks weir relies on that
    // rightly.
    let db = fresh_database();
    let proxy = Proxy::start(&config_toml(&db, "size = 1", "")).await;
    let mut c = proxy.client(&db).await;
    let text = "SELECT generate_series(1, 10) AS n";
    let first = c.prepare(text).await.expect("prepare");
    let tx = c.transaction().await.expect("begin");
    let portal = tx.bind(&first, &[]).await.expect("bind");
    let rows = tx.query_portal(&portal, 3).await.expect("first rows");
    assert_eq!(rows.len(), 3);
    let again = tx.prepare(text).await.expect("prepare the same text");
    let rows = tx
        .query_portal(&portal, 3)
        .await
        .expect("the portal is still open");
    let got: Vec<i32> = rows.iter().map(|r| r.get("n")).collect();
    assert_eq!(got, [4, 5, 6]);
    assert_eq!(tx.query(&again, &[]).await.expect("run").len(), 10);
    tx.commit().await.expect("commit");
    // Both client names share the one copy.
    assert_eq!(c.query(&first, &[]).await.expect("run first").len(), 10);
    drop(again);
    let count = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'weir\\_%'";
    assert_eq!(common::simple_value(&c, count).await, "1");
    proxy.stop().await;
}
