use dbos_runtime::prelude::*;

/// A documented queue with every limit, declared in a module and used from outside it.
mod queues {
    use dbos_runtime::prelude::*;

    #[queue]
    pub static EMAILS: Queue = Queue::new("emails")
        .concurrency(10)
        .worker_concurrency(2)
        .rate_limit(50, Duration::from_secs(30))
        .priority_enabled();

    #[queue]
    pub(crate) static TENANTS: Queue = Queue::new("tenants").partitioned();
}

#[workflow]
async fn send(to: String) -> Result<String, Error> {
    Ok(to)
}

#[allow(dead_code)]
async fn enqueue() -> Result<(), Error> {
    queues::EMAILS
        .enqueue(send("a".into()).with_priority(1).with_dedup_id("a"))
        .await?;
    queues::TENANTS
        .enqueue(send("b".into()).with_partition("t-1").with_delay(Duration::from_secs(5)))
        .await?;
    Ok(())
}

fn main() {}
