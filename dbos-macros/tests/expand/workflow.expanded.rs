/// Docs stay.
pub fn checkout(
    order: Order,
    __dbos_arg1: (u32, u32),
    note: Note,
) -> ::dbos_runtime::WorkflowCall<
    <Res<Receipt> as ::dbos_runtime::__private::IsResult>::Ok,
    <Res<Receipt> as ::dbos_runtime::__private::IsResult>::Err,
> {
    ::dbos_runtime::__private::assert_workflow_arg::<Order>();
    ::dbos_runtime::__private::assert_workflow_arg::<(u32, u32)>();
    ::dbos_runtime::__private::assert_workflow_arg::<Note>();
    ::dbos_runtime::__private::assert_output::<
        <Res<Receipt> as ::dbos_runtime::__private::IsResult>::Ok,
    >();
    ::dbos_runtime::__private::assert_error::<
        <Res<Receipt> as ::dbos_runtime::__private::IsResult>::Err,
    >();
    async fn __dbos_body(
        order: Order,
        (x, y): (u32, u32),
        mut note: Note,
    ) -> Res<Receipt> {
        let marker = "BODY-MARKER";
        note.push(marker);
        place(order, x + y, note).await
    }
    let mut __dbos_args = ::dbos_runtime::__private::ArgsEncoder::with_format(
        ::dbos_runtime::__private::Format::Json,
    );
    __dbos_args.push(&order);
    __dbos_args.push(&__dbos_arg1);
    __dbos_args.push(&note);
    ::dbos_runtime::__private::workflow_call(
        ::core::concat!(::core::module_path!(), "::", "checkout"),
        __dbos_args,
        __dbos_body(order, __dbos_arg1, note),
    )
}
const _: () = {
    fn __dbos_resume(
        mut __dbos_inputs: ::dbos_runtime::__private::Inputs,
    ) -> ::core::result::Result<
        ::dbos_runtime::__private::ErasedCall,
        ::dbos_runtime::Error,
    > {
        let __dbos_in0: Order = __dbos_inputs.next()?;
        let __dbos_in1: (u32, u32) = __dbos_inputs.next()?;
        let __dbos_in2: Note = __dbos_inputs.next()?;
        __dbos_inputs.finish()?;
        ::core::result::Result::Ok(
            ::dbos_runtime::__private::erase(
                checkout(__dbos_in0, __dbos_in1, __dbos_in2),
            ),
        )
    }
    ::dbos_runtime::__private::inventory::submit! {
        ::dbos_runtime::__private::Entry::workflow(::core::concat!(::core::module_path!(),
        "::", "checkout"), __dbos_resume, ::core::file!(), ::core::line!())
    }
};
