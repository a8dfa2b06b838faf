async fn progress(scheduled: Time, actual: Time) -> Res<Done> {
    ::dbos_runtime::__private::assert_output::<
        <Res<Done> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Done> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    ::dbos_runtime::__private::assert_clone::<Time>();
    ::dbos_runtime::__private::assert_clone::<Time>();
    async fn __dbos_body(tx: &mut Tx, scheduled: Time, actual: Time) -> Res<Done> {
        let marker = "BODY-MARKER";
        advance(tx, scheduled, actual, marker).await
    }
    ::dbos_runtime::__private::run_transaction(
            ::core::concat!(::core::module_path!(), "::", "progress"),
            ::dbos_runtime::__private::TxOptions {
                isolation: ::core::option::Option::None,
                read_only: false,
                format: ::dbos_runtime::__private::Format::Json,
            },
            move |__dbos_tx| ::std::boxed::Box::pin(
                __dbos_body(
                    __dbos_tx,
                    ::core::clone::Clone::clone(&scheduled),
                    ::core::clone::Clone::clone(&actual),
                ),
            ),
        )
        .await
}
const _: () = {
    fn __dbos_resume(
        mut __dbos_inputs: ::dbos_runtime::__private::Inputs,
    ) -> ::core::result::Result<
        ::dbos_runtime::__private::ErasedCall,
        ::dbos_runtime::Error,
    > {
        let _ = |
            __dbos_time: Time,
        | -> ::dbos_runtime::__private::chrono::DateTime<
            ::dbos_runtime::__private::chrono::Utc,
        > { __dbos_time };
        let _ = |
            __dbos_time: Time,
        | -> ::dbos_runtime::__private::chrono::DateTime<
            ::dbos_runtime::__private::chrono::Utc,
        > { __dbos_time };
        let __dbos_in0: Time = __dbos_inputs.next()?;
        let __dbos_in1: Time = __dbos_inputs.next()?;
        __dbos_inputs.finish()?;
        let mut __dbos_args = ::dbos_runtime::__private::ArgsEncoder::new();
        __dbos_args.push(&__dbos_in0);
        __dbos_args.push(&__dbos_in1);
        ::core::result::Result::Ok(
            ::dbos_runtime::__private::erase(
                ::dbos_runtime::__private::workflow_call(
                    ::core::concat!("<temp>.", ::core::module_path!(), "::", "progress"),
                    __dbos_args,
                    progress(__dbos_in0, __dbos_in1),
                ),
            ),
        )
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::workflow(::core::concat!("<temp>.",
        ::core::module_path!(), "::", "progress"), __dbos_resume, ::core::file!(),
        ::core::line!())
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::schedule(::core::concat!("<temp>.",
        ::core::module_path!(), "::", "progress"), "*/10 * * * * *")
    }
};
