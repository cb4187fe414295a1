"""`make demo`'s console is our progress and outcomes; libraries' warnings and notes go to its log file."""

import subprocess
import sys
import textwrap


def test_library_warnings_and_mlflow_notes_go_to_the_log_not_the_console(tmp_path):
    log = tmp_path / "logs" / "demo.log"
    script = textwrap.dedent(
        f"""
        import logging, warnings
        from pathlib import Path
        from alphapulse_assets.demo import say, send_library_output_to
        send_library_output_to(Path({str(log)!r}))
        import mlflow.utils.environment
        logging.getLogger("mlflow.utils.environment").warning("Failed to resolve installed pip version.")
        warnings.warn("a library deprecation", DeprecationWarning, stacklevel=1)
        warnings.warn("a library user warning", stacklevel=1)
        say("[1/3] our progress line")
        """
    )
    result = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[1/3] our progress line\n" and result.stderr == ""
    written = log.read_text()
    assert "Failed to resolve installed pip version" in written
    assert "a library deprecation" in written and "a library user warning" in written
