async fn charge(card: &Card, cents: Cents) -> Res<Payment> {
    ::dbos_runtime::__private::assert_output::<
        <Res<Payment> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Payment> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    async fn __dbos_body(card: &Card, cents: Cents) -> Res<Payment> {
        let marker = "BODY-MARKER";
        pay(card, cents, marker).await
    }
    ::dbos_runtime::__private::run_step_once(
            "charge",
            ::dbos_runtime::__private::Format::Json,
            __dbos_body(card, cents),
        )
        .await
}
