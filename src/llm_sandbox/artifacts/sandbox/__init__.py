"""Code that runs inside the sandbox, in the code's own process and as the code's user, to capture its figures.

``python_launch.py`` starts a Python run: it loads ``python_capture.py`` privately, then runs the code file as
``python file.py`` would. ``capture.R`` is read by ``Rscript`` as the user profile before the code runs. These files
are written into the run's temporary folder with the code file; they are package data, never imported by the host.
"""
