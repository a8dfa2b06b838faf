//! `Runtime::connect`: a client of the system database. It recovers nothing, dispatches
//! nothing and runs no workflow; what it starts is enqueued and run by a launched runtime, and
//! it reads results, statuses and events and sends messages like any runtime.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, within, TestDb};

const APP: &str = "client-tests";

#[step]
async fn shout(name: String) -> Result<String, Error> {
    Ok(name.to_uppercase())
}

#[workflow]
async fn greet(name: String) -> Result<String, Error> {
    let loud = shout(name).await?;
    Ok(format!("hello {loud}"))
}

#[workflow]
async fn echo_once() -> Result<(), Error> {
    DBOS::set_event("ready", &true).await?;
    let got: Option<String> = DBOS::recv("in", Duration::from_secs(20)).await?;
    DBOS::set_event("echo", &got).await?;
    Ok(())
}

fn config(db: &TestDb, executor: &str) -> DbosConfig {
    db.config(APP)
        .with_version("client-1")
        .with_executor_id(executor)
}

async fn status(rt: &Runtime, id: &str) -> String {
    rt.get_status(id)
        .await
        .expect("read the status")
        .expect("the workflow exists")
        .status
}

both_backends! {
    async fn a_client_runs_nothing_and_a_launched_runtime_runs_what_it_starts(db: TestDb) {
        let client = within("connect", Runtime::connect(config(&db, "client"))).await.expect("connect");
        let handle = client.start_workflow(greet("ada".into()).with_id("greet-1")).await.expect("start from the client");
        // No dispatcher in a client: the workflow waits on the queue.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(status(&client, "greet-1").await, "ENQUEUED");
        assert_eq!(client.running_workflows(), 0, "a client runs no workflow");

        let worker = within("launch", Runtime::launch(config(&db, "worker"))).await.expect("launch");
        let out = within("the result, through the client", handle.get_result()).await.expect("the workflow succeeds");
        assert_eq!(out, "hello ADA");
        let x = db.inspect().await;
        let executor = x
            .rows(&format!("SELECT executor_id FROM {}workflow_status WHERE workflow_uuid = 'greet-1'", db.sys()))
            .await;
        assert_eq!(executor[0][0].as_deref(), Some("worker"), "the launched runtime ran it");

        // Starting the same ID again from the client joins the finished workflow.
        let again = client.start_workflow(greet("bob".into()).with_id("greet-1")).await.expect("start again");
        assert_eq!(within("the joined result", again.get_result()).await.expect("joined"), "hello ADA");
        worker.shutdown().await;
        client.shutdown().await;
    }
}

both_backends! {
    async fn a_client_sends_messages_and_reads_events(db: TestDb) {
        let worker = within("launch", Runtime::launch(config(&db, "worker"))).await.expect("launch");
        let client = within("connect", Runtime::connect(config(&db, "client"))).await.expect("connect");
        worker.start_workflow(echo_once().with_id("echo-1")).await.expect("start on the worker");
        let ready: Option<bool> = client.get_event("echo-1", "ready", Duration::from_secs(20)).await.expect("read");
        assert_eq!(ready, Some(true));
        client.send("echo-1", &"ping", "in").await.expect("send from the client");
        let echo: Option<Option<String>> = client.get_event("echo-1", "echo", Duration::from_secs(20)).await.expect("read");
        assert_eq!(echo, Some(Some("ping".to_owned())));
        let missing = client.retrieve_workflow::<(), Error>("no-such-workflow").await;
        assert!(matches!(missing, Err(Error::NonExistentWorkflow(_))), "{missing:?}");
        client.shutdown().await;
        worker.shutdown().await;
    }
}
