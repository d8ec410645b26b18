//! Argument decoding of every process action: good arguments pass, and each
//! kind of bad argument (wrong type, missing, extra, out of range, unknown
//! option) is `invalid_argument` naming the argument.

use ciborium::Value;

use crate::args::testing::{bad, int, map, ok, text};

const PID_ACTIONS: &[&str] = &[
    "waitProcess",
    "killProcess",
    "stopProcess",
    "getProcess",
    "closeProcessStdin",
    "readProcessOutput",
];

#[test]
fn pid_actions_check_the_pid() {
    for action in PID_ACTIONS {
        ok(action, vec![int(1_000_000)]);
        bad(action, vec![], "`pid`");
        bad(action, vec![text("1000000")], "`pid`");
        bad(action, vec![int(-1)], "`pid`");
        bad(action, vec![int(1 << 32)], "out of range");
        bad(action, vec![Value::Float(1.5)], "`pid`");
    }
    for action in ["waitProcess", "killProcess", "stopProcess", "getProcess", "closeProcessStdin"] {
        bad(action, vec![int(1), int(2)], "too many arguments");
    }
    ok("readProcessOutput", vec![int(1), int(5)]);
    bad("readProcessOutput", vec![int(1), text("5")], "`after`");
    bad("readProcessOutput", vec![int(1), int(-5)], "`after`");
    bad("readProcessOutput", vec![int(1), int(1), int(1)], "too many arguments");
}

#[test]
fn listing_actions_take_no_arguments() {
    for action in ["listProcesses", "allProcesses", "processTree"] {
        ok(action, vec![]);
        bad(action, vec![int(1)], "too many arguments");
    }
}

#[test]
fn exec_and_exec_argv_options() {
    let options = map(vec![
        ("env", map(vec![("A", text("1"))])),
        ("cwd", text("/tmp")),
        ("stdin", Value::Bytes(vec![0, 1])),
        ("timeoutMs", int(500)),
    ]);
    ok("exec", vec![text("echo hi"), options.clone()]);
    ok("exec", vec![text("echo hi"), map(vec![("stdin", text("text"))])]);
    ok("execArgv", vec![text("echo"), Value::Array(vec![text("a b")]), options]);
    ok("execArgv", vec![text("echo"), Value::Array(vec![])]);

    bad("exec", vec![], "`command`");
    bad("exec", vec![int(1)], "`command`");
    bad("exec", vec![text("x"), map(vec![("timeoutMs", text("1"))])], "`options.timeoutMs`");
    bad("exec", vec![text("x"), map(vec![("timeoutMs", int(1 << 40))])], "out of range");
    bad("exec", vec![text("x"), map(vec![("stdin", Value::Bool(true))])], "`options.stdin`");
    bad("exec", vec![text("x"), map(vec![("cpuTimeLimitMs", int(1))])], "`options.cpuTimeLimitMs`");
    bad("exec", vec![text("x"), map(vec![]), int(1)], "too many arguments");
    bad("execArgv", vec![text("echo")], "`args`");
    bad("execArgv", vec![text("echo"), text("a")], "`args`");
    bad("execArgv", vec![text("echo"), Value::Array(vec![int(1)])], "`args[0]`");
    bad("execArgv", vec![text("echo"), Value::Array(vec![]), map(vec![("cwd", int(1))])], "`options.cwd`");
}

#[test]
fn spawn_options() {
    let options = map(vec![
        ("env", map(vec![("A", text("1"))])),
        ("cwd", text("/tmp")),
        ("streamStdin", Value::Bool(false)),
        ("stdin", text("input")),
    ]);
    ok("spawn", vec![text("cat"), Value::Array(vec![]), options]);
    bad("spawn", vec![text("cat")], "`args`");
    bad("spawn", vec![Value::Null, Value::Array(vec![])], "`command`");
    bad("spawn", vec![text("cat"), Value::Array(vec![]), map(vec![("streamStdin", text("yes"))])], "`options.streamStdin`");
    bad("spawn", vec![text("cat"), Value::Array(vec![]), map(vec![("cols", int(80))])], "`options.cols`");
    bad("spawn", vec![text("cat"), Value::Array(vec![]), map(vec![]), int(1)], "too many arguments");
}

#[test]
fn write_process_stdin_args() {
    ok("writeProcessStdin", vec![int(1), text("text")]);
    ok("writeProcessStdin", vec![int(1), Value::Bytes(vec![0, 255])]);
    ok("writeProcessStdin", vec![int(1), Value::Array(vec![text("$Uint8Array"), text("AAE=")])]);
    bad("writeProcessStdin", vec![int(1)], "`data`");
    bad("writeProcessStdin", vec![int(1), int(2)], "`data`");
    bad("writeProcessStdin", vec![text("1"), text("x")], "`pid`");
    bad("writeProcessStdin", vec![int(1), text("x"), text("y")], "too many arguments");
}

#[test]
fn code_actions_check_language_and_options() {
    for action in ["executeCode", "evaluateCode"] {
        ok(action, vec![text("javascript"), text("1 + 1")]);
        ok(action, vec![text("typescript"), text("1 + 1"), map(vec![("timeoutMs", int(1000)), ("stdin", text("x"))])]);
        bad(action, vec![text("python"), text("1")], "`language`");
        bad(action, vec![int(1), text("1")], "`language`");
        bad(action, vec![text("javascript")], "`");
        bad(action, vec![text("javascript"), Value::Bool(true)], "`");
        bad(action, vec![text("javascript"), text("1"), map(vec![("inputs", map(vec![]))])], "`options.inputs`");
        bad(action, vec![text("javascript"), text("1"), map(vec![("timeoutMs", int(-1))])], "`options.timeoutMs`");
        bad(action, vec![text("javascript"), text("1"), map(vec![]), int(1)], "too many arguments");
    }
    bad("executeCode", vec![text("javascript")], "`code`");
    bad("evaluateCode", vec![text("javascript")], "`expression`");
}
