pub async fn reserve(product: Product) -> Res<Reserved> {
    ::dbos_runtime::__private::assert_output::<
        <Res<Reserved> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Reserved> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    ::dbos_runtime::__private::assert_clone::<Product>();
    async fn __dbos_body(tx: &mut Tx, product: Product) -> Res<Reserved> {
        let marker = "BODY-MARKER";
        take(tx, product, marker).await
    }
    ::dbos_runtime::__private::run_transaction(
            ::core::concat!(::core::module_path!(), "::", "reserve"),
            ::dbos_runtime::__private::TxOptions {
                isolation: ::core::option::Option::Some(
                    ::dbos_runtime::__private::Isolation::Serializable,
                ),
                read_only: true,
                format: ::dbos_runtime::__private::Format::Json,
            },
            move |__dbos_tx| ::std::boxed::Box::pin(
                __dbos_body(__dbos_tx, ::core::clone::Clone::clone(&product)),
            ),
        )
        .await
}
