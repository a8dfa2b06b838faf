pub(crate) async fn fetch(url: Url, attempt: Attempt) -> Res<Page> {
    ::dbos_runtime::__private::assert_output::<
        <Res<Page> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Page> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    ::dbos_runtime::__private::assert_clone::<Url>();
    ::dbos_runtime::__private::assert_clone::<Attempt>();
    async fn __dbos_body(url: Url, mut attempt: Attempt) -> Res<Page> {
        #![allow(unused_mut)]
        let marker = "BODY-MARKER";
        get(url, attempt, marker).await
    }
    ::dbos_runtime::__private::run_step(
            ::core::concat!(::core::module_path!(), "::", "fetch"),
            ::dbos_runtime::__private::StepOptions {
                max_attempts: 3u32,
                interval_secs: 0.5f64,
                backoff: 1.5f64,
                format: ::dbos_runtime::__private::Format::Json,
            },
            move || __dbos_body(
                ::core::clone::Clone::clone(&url),
                ::core::clone::Clone::clone(&attempt),
            ),
        )
        .await
}
