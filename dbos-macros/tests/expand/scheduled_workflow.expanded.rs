fn nightly(
    scheduled: Time,
    actual: Time,
) -> ::dbos_runtime::WorkflowCall<
    <Res<Done> as ::dbos_runtime::__private::IsResult>::Ok,
    <Res<Done> as ::dbos_runtime::__private::IsResult>::Err,
> {
    ::dbos_runtime::__private::assert_workflow_arg::<Time>();
    ::dbos_runtime::__private::assert_workflow_arg::<Time>();
    ::dbos_runtime::__private::assert_output::<
        <Res<Done> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Done> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    async fn __dbos_body(scheduled: Time, actual: Time) -> Res<Done> {
        let marker = "BODY-MARKER";
        report(scheduled, actual, marker).await
    }
    let mut __dbos_args = ::dbos_runtime::__private::ArgsEncoder::with_format(
        ::dbos_runtime::__private::Format::Json,
    );
    __dbos_args.push(&scheduled);
    __dbos_args.push(&actual);
    ::dbos_runtime::__private::workflow_call(
        "nightly",
        __dbos_args,
        __dbos_body(scheduled, actual),
    )
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
        ::core::result::Result::Ok(
            ::dbos_runtime::__private::erase(nightly(__dbos_in0, __dbos_in1)),
        )
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::workflow("nightly", __dbos_resume,
        ::core::file!(), ::core::line!())
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::schedule("nightly", "0 0 3 * * *")
    }
};
