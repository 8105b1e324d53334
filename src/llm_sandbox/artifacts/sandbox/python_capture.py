"""Captures the figures a Python program draws into a folder, from inside the program (any Python 3.7+).

Nothing is imported ahead of the program: an import hook waits for the plotting libraries and patches them once
they are loaded, so a run that draws nothing pays nothing. What it patches:

- matplotlib: the backend is ``agg`` (no display; ``plt.show()`` never blocks); ``plt.show()`` saves every open
  figure as PNG, in creation order, then closes them; ``savefig`` to a path saves a copy of the file it wrote (any
  format); figures still open when the program ends are saved then. A figure is captured once by ``show`` or the
  end (not when the program saved it already: ``savefig`` then ``show`` gives one file); each ``savefig`` to a
  path gives its own copy;
- plotly: ``fig.show()`` saves the figure as HTML (plotly.js from its CDN, so the file stays small);
  ``write_html`` and ``write_image`` to a path save a copy of the file written (``write_image`` without its
  engine raises plotly's own error, which names the package it needs).

Files are named by a counter (``0001.png``, ``0002.html``, ...), so their names sort in the order they were made.
``install(folder)`` sets it all up and returns the ``FigureCapture``; a long-lived interpreter calls its
``flush()`` after each piece of code and may point ``folder`` elsewhere in between. A failure to capture never
changes what the program does: it is reported on stderr, prefixed ``llm-sandbox:``.
"""

from __future__ import annotations

import atexit
import os
import stat
import sys
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: inside the sandbox this file runs on its own
    from types import ModuleType
    from typing import Any, Callable, Dict, List, Optional

    Hook = Callable[[Any], None]

# Extensions as matplotlib and plotly write them, by the name the host knows the format under.
FORMAT_NAMES = {"jpg": "jpeg", "tif": "tiff", "rgba": "raw", "htm": "html"}
COPY_CHUNK = 1 << 20


class AfterImport:
    """A meta path finder that runs a hook right after one of the named modules is loaded (the rest of
    ``sys.meta_path`` finds and loads it as usual)."""

    def __init__(self, hooks: Dict[str, Hook]) -> None:
        self.hooks = hooks

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        hook = self.hooks.pop(name, None)
        if hook is None:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = HookedLoader(spec.loader, hook)
        return spec


class HookedLoader:
    """A module's own loader, with the hook run after it; the module keeps its own loader afterwards."""

    def __init__(self, loader: Any, hook: Hook) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self.loader
        self.loader.exec_module(module)
        try:
            self.hook(module)
        except Exception as error:
            report("could not prepare %s for capture: %s" % (module.__name__, error))


def report(message: str) -> None:
    try:
        sys.stderr.write("llm-sandbox: %s\n" % message)
    except Exception:
        pass


def read_regular(path: str) -> Optional[bytes]:
    """The bytes of the regular file at ``path``, never through a link; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        parts: List[bytes] = []
        while True:
            chunk = os.read(fd, COPY_CHUNK)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
    finally:
        os.close(fd)


class FigureCapture:
    """Where figures go and what has been saved; the patches of the plotting libraries call it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.count = 0
        self.order: Any = weakref.WeakKeyDictionary()  # figure -> creation number
        self.saved: Any = weakref.WeakKeyDictionary()  # figures saved already (by the program or the capture)
        self.created = 0
        self.original_savefig: Optional[Callable[..., Any]] = None
        self.pyplot: Any = None

    def next_path(self, extension: str) -> str:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, 0o700)
        self.count += 1
        name = FORMAT_NAMES.get(extension.lower(), extension.lower())
        return os.path.join(self.folder, "%04d.%s" % (self.count, name))

    def keep_copy(self, path: Any, extension: str) -> None:
        """Save a copy of a file the program wrote (a path it gave to savefig or write_html)."""
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # written to an open file or a buffer: the program keeps it
        data = read_regular(os.fsdecode(path))
        if data is None:
            return
        with open(self.next_path(extension), "wb") as handle:
            handle.write(data)

    # matplotlib ----------------------------------------------------------------------------------------------

    def prepare_matplotlib(self, matplotlib: Any) -> None:
        matplotlib.rcParams["backend"] = "agg"  # no display in a sandbox: never look for one

    def prepare_figure(self, figure_module: Any) -> None:
        figure_class = figure_module.Figure
        original = figure_class.savefig
        self.original_savefig = original
        capture = self

        def savefig(figure: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(figure, fname, *args, **kwargs)
            try:
                capture.after_savefig(figure, fname, kwargs.get("format"))
            except Exception as error:
                report("could not capture a saved figure: %s" % error)
            return result

        savefig.__doc__ = original.__doc__
        savefig.__wrapped__ = original  # type: ignore[attr-defined]
        figure_class.savefig = savefig

    def after_savefig(self, figure: Any, fname: Any, format_name: Optional[str]) -> None:
        if not isinstance(fname, (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(fname)
        extension = os.path.splitext(path)[1][1:]
        if format_name is None and not extension:
            # matplotlib added the default format's extension to the name (as it does for a bare name)
            format_name = sys.modules["matplotlib"].rcParams["savefig.format"]
            path = path.rstrip(".") + "." + format_name
        self.keep_copy(path, format_name or extension)
        self.saved[figure] = True

    def prepare_pyplot(self, pyplot: Any) -> None:
        self.pyplot = pyplot
        original_new = pyplot.new_figure_manager
        capture = self

        def new_figure_manager(*args: Any, **kwargs: Any) -> Any:
            manager = original_new(*args, **kwargs)
            capture.created += 1
            capture.order[manager.canvas.figure] = capture.created
            return manager

        def show(*args: Any, **kwargs: Any) -> None:
            """Save every open figure (the sandbox has no display; this never blocks), then close them."""
            capture.flush()

        pyplot.new_figure_manager = new_figure_manager
        pyplot.show = show
        # After matplotlib's own exit handler (registered when pyplot imported it), so this one runs first.
        atexit.register(self.flush_at_exit)

    def open_figures(self) -> List[Any]:
        helpers = sys.modules.get("matplotlib._pylab_helpers")
        if helpers is None:
            return []
        managers = helpers.Gcf.get_all_fig_managers()
        figures = [manager.canvas.figure for manager in managers]
        last = len(figures) + self.created + 1
        return sorted(figures, key=lambda figure: self.order.get(figure, last))

    def flush(self, close: bool = True) -> None:
        """Save each open figure that has something drawn and was not saved unchanged already, in creation order;
        then close them all (as a display would, once shown)."""
        for figure in self.open_figures():
            try:
                self.save_figure(figure)
            except Exception as error:
                report("could not capture a figure: %s" % error)
        if close and self.pyplot is not None:
            self.pyplot.close("all")

    def flush_at_exit(self) -> None:
        self.flush(close=False)

    def save_figure(self, figure: Any) -> None:
        if len(figure.get_children()) <= 1:  # the background alone: nothing was drawn
            return
        if self.saved.get(figure):  # once per figure: a figure saved already is not saved again
            return
        savefig = self.original_savefig or type(figure).savefig
        savefig(figure, self.next_path("png"), format="png")
        self.saved[figure] = True

    # plotly --------------------------------------------------------------------------------------------------

    def prepare_plotly_io(self, pio: Any) -> None:
        capture = self
        original_show = pio.show
        original_html = pio.write_html
        original_image = pio.write_image

        def show(fig: Any, *args: Any, **kwargs: Any) -> None:
            """Save the figure as HTML (the sandbox has no browser)."""
            try:
                original_html(fig, capture.next_path("html"), include_plotlyjs="cdn", full_html=True)
            except Exception as error:
                report("could not capture a plotly figure: %s" % error)

        def write_html(fig: Any, file: Any, *args: Any, **kwargs: Any) -> Any:
            result = original_html(fig, file, *args, **kwargs)
            capture.copy_written(file, "html")
            return result

        def write_image(fig: Any, file: Any, format: Any = None, *args: Any, **kwargs: Any) -> Any:
            result = original_image(fig, file, format, *args, **kwargs)
            extension = format or ""
            if not extension and isinstance(file, (str, bytes, os.PathLike)):
                extension = os.path.splitext(os.fsdecode(file))[1][1:]
            capture.copy_written(file, extension or "png")
            return result

        show.__wrapped__ = original_show  # type: ignore[attr-defined]
        pio.show = show
        pio.write_html = write_html
        pio.write_image = write_image

    def copy_written(self, file: Any, extension: str) -> None:
        try:
            self.keep_copy(file, extension)
        except Exception as error:
            report("could not capture a written figure: %s" % error)


def install(folder: str) -> FigureCapture:
    """Capture the figures of this interpreter into ``folder`` from now on (the plotting libraries are patched
    when they are imported; ones imported already are patched now). Once per interpreter: to capture into another
    folder later, set the returned capture's ``folder``."""
    capture = FigureCapture(folder)
    hooks: Dict[str, Hook] = {
        "matplotlib": capture.prepare_matplotlib,
        "matplotlib.figure": capture.prepare_figure,
        "matplotlib.pyplot": capture.prepare_pyplot,
        "plotly.io": capture.prepare_plotly_io,
    }
    for name in list(hooks):
        module = sys.modules.get(name)
        if module is not None:
            hooks.pop(name)(module)
    sys.meta_path.insert(0, AfterImport(hooks))
    return capture
