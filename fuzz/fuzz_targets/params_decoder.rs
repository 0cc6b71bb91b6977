//! Untrusted task input: arbitrary bytes as a protobuf SubmitRequest, and as params JSON,
//! through the same validation Submit uses. Must never panic.
#![no_main]

use cadre_proto::v1;
use cadre_proto::{SpecLimits, TaskSpec};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let limits = SpecLimits::default();
    if let Ok(req) = v1::SubmitRequest::decode(data) {
        let _ = TaskSpec::from_wire(req.spec.as_ref(), &limits);
    }
    let params = String::from_utf8_lossy(data).into_owned();
    let wire = v1::TaskSpec {
        task_type: "system.debug.echo".into(),
        params_json: params,
        ..Default::default()
    };
    if let Ok(spec) = TaskSpec::from_wire(Some(&wire), &limits) {
        // What was accepted converts back and validates again.
        let again = TaskSpec::from_wire(Some(&spec.to_wire()), &limits).expect("round trip");
        assert_eq!(again.params, spec.params);
    }
});
