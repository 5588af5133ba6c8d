"""The Stop / Resume buttons and the progress bar of stepped work (inversions on pages 4 and 6, fine-tuning on 7)."""
from __future__ import annotations

import streamlit as st

from .cache import progress_bar
from .stepped_session import SteppedSession


def stop_resume_advance(session: SteppedSession, *, key: str, label: str) -> None:
    """Draw Stop and Resume (keys ``KEY.stop``/``KEY.resume``), then advance a running session
    under a progress bar titled ``label``; a widget change interrupts the script between batches,
    and the session keeps what it reached."""
    stop, resume = st.columns(2)
    if stop.button("Stop", disabled=not session.running, key=f"{key}.stop"):
        session.stop()
    if resume.button("Resume", disabled=session.active or not session.unfinished, key=f"{key}.resume"):
        session.resume()
    if session.running:
        bar = progress_bar(label)
        try:
            session.advance(bar)
        finally:
            bar.done()
