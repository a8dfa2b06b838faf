fn ingest(
    batch: Batch,
) -> ::dbos_runtime::WorkflowCall<
    <Res<Summary> as ::dbos_runtime::__private::IsResult>::Ok,
    <Res<Summary> as ::dbos_runtime::__private::IsResult>::Err,
> {
    ::dbos_runtime::__private::assert_workflow_arg::<Batch>();
    ::dbos_runtime::__private::assert_output::<
        <Res<Summary> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Summary> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    async fn __dbos_body(batch: Batch) -> Res<Summary> {
        let marker = "BODY-MARKER";
        summarize(batch, marker).await
    }
    let mut __dbos_args = ::dbos_runtime::__private::ArgsEncoder::with_format(
        ::dbos_runtime::__private::bincode::<()>(),
    );
    __dbos_args.push(&batch);
    ::dbos_runtime::__private::workflow_call(
        ::core::concat!(::core::module_path!(), "::", "ingest"),
        __dbos_args,
        __dbos_body(batch),
    )
}
const _: () = {
    fn __dbos_resume(
        mut __dbos_inputs: ::dbos_runtime::__private::Inputs,
    ) -> ::core::result::Result<
        ::dbos_runtime::__private::ErasedCall,
        ::dbos_runtime::Error,
    > {
        let __dbos_in0: Batch = __dbos_inputs.next()?;
        __dbos_inputs.finish()?;
        ::core::result::Result::Ok(::dbos_runtime::__private::erase(ingest(__dbos_in0)))
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::workflow(::core::concat!(::core::module_path!(),
        "::", "ingest"), __dbos_resume, ::core::file!(), ::core::line!())
    }
};
