"""Runs one function's handler the way the Lambda Python runtime does, in an interpreter whose
path holds only what Lambda would give it. Not a test module: the artifact tests start it as

    python -I -S lambda_harness.py TASK_ROOT LAYER_PYTHON RUNTIME_SDK ANSWERS_FILE < events.json

`-I -S`: no site-packages, no PYTHON* variables, not even this file's directory on the path;
the harness puts the function's artifact, the layer's `python/` and the runtime's own boto3 in
front of the standard library, in Lambda's order. Each event's answer (or the exception it
raised) and every module loaded from outside those directories are written to ANSWERS_FILE.
Standard library only: nothing of the test environment is importable here.
"""

import importlib
import json
import os
import sys
import sysconfig
import traceback
import uuid

task_root, layer, runtime_sdk, answers_file = sys.argv[1:5]
allowed = [task_root, layer, runtime_sdk]
sys.path[:0] = allowed
os.chdir(task_root)


class LambdaContext:
    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/11/22/[$LATEST]artifact"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


#: The function's module, imported as the runtime imports `handler.lambda_handler`.
handler = importlib.import_module("handler")

events = json.load(sys.stdin)
answers = []
for event in events:
    try:
        answers.append(
            {
                "answer": handler.lambda_handler(
                    event, LambdaContext(os.environ["AWS_LAMBDA_FUNCTION_NAME"])
                )
            }
        )
    except Exception as exc:  # the runtime reports it as the invocation's error
        answers.append(
            {"raised": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
        )

stdlib = [sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib")]
foreign = sorted(
    f"{name}: {path}"
    for name, module in list(sys.modules.items())
    if name not in ("__main__", "__mp_main__")  # this harness
    and (path := getattr(module, "__file__", None))
    and not any(
        os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)
        for root in allowed + stdlib
    )
)
with open(answers_file, "w") as out:
    json.dump({"answers": answers, "foreign_modules": foreign}, out)
