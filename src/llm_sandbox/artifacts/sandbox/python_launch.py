"""Starts a Python run with its figures captured: loads the capture privately (no module of the program's sees it),
then runs the code file exactly as ``python file.py`` would: ``__main__`` with the file's ``__file__``,
``sys.argv`` and ``sys.path[0]``, and tracebacks without this launcher's frames.

The host appends the call, with the code file's name: ``_llm_sandbox_launch("main.py")``. The capture folder is
``plots`` beside it (the run's temporary folder).
"""


def _llm_sandbox_launch(code_file: str) -> None:
    import os
    import sys

    os.environ.pop("LLM_SANDBOX_WARM_IMPORTS", None)  # the helper's word to a waiting interpreter, not the program's
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, code_file)
    capture_path = os.path.join(here, "llm_sandbox_capture.py")
    with open(capture_path, "rb") as handle:
        capture_source = handle.read()
    capture = type(sys)("llm_sandbox_capture")  # a module object the program's imports never find
    capture.__file__ = capture_path
    exec(compile(capture_source, capture_path, "exec"), capture.__dict__)
    capture.install(os.path.join(here, "plots"))

    def hook(kind, value, trace):  # type: ignore[no-untyped-def]
        # From the program's first frame on, as Python prints it; none of it (a syntax error): the error alone.
        while trace is not None and trace.tb_frame.f_code.co_filename != path:
            trace = trace.tb_next
        if isinstance(value, BaseException):
            value = value.with_traceback(trace)
        sys.__excepthook__(kind, value, trace)

    sys.excepthook = hook
    sys.argv[:] = [path]
    sys.path[0] = here
    with open(path, "rb") as handle:
        source = handle.read()
    namespace = sys.modules["__main__"].__dict__
    namespace.pop("_llm_sandbox_launch", None)
    namespace["__file__"] = path
    namespace["__doc__"] = None  # this launcher's docstring is not the program's
    exec(compile(source, path, "exec"), namespace)
