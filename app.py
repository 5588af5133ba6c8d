"""XAI Lab (``streamlit run app.py``): the router. It reads the link back into the session
(``ui.url_state.restore``, before anything is drawn), draws the shared sidebar once per run and
the notice about photos on a shapes model, then the chosen page: the home page (``ui.home``) or
one of ``pages/*.py``, grouped by what a user wants. After the page, even one that stopped
early (``ui.url_state.stop_page``), the view is written back into the link (``ui.url_state.sync``),
and, once per process, the imports the first explanation needs start in the background
(``ui.warm_imports``).

Widgets drawn here, in the entrypoint, keep their state whatever the page (streamlit's
"Working with widgets in multipage apps"); the pages' ``sidebar()`` calls return the selection
drawn here.
"""
from pathlib import Path

import streamlit as st

from ui import url_state, warm_imports
from ui.home import home, photo_notice
from ui.sidebar import LINK_CHECKS, link_keys, shared_selection, sidebar

ROOT = Path(__file__).resolve().parent
PAGES = {  # group → (file, title, the page's KEY_PREFIX: the keys of its settings, which the link holds)
    "Explain": [("1_Gradients_and_CAM.py", "Gradients and CAM", "gradients_cam"), ("2_RISE.py", "RISE", "rise_page"),
                ("3_IG_and_RIG.py", "IG and RIG", "ig_rig"),
                ("4_Inversion_and_Zeiler_Fergus.py", "Inversion and Zeiler-Fergus", "inversion"),
                ("9_What_if.py", "What if", "whatif")],
    "Compare": [("6_Compare.py", "Compare", "compare")],
    "Evaluate": [("5_Evaluate.py", "Evaluate", "evaluate")],
    "Train": [("7_Fine_tune.py", "Fine-tune", "ft")],
    "Report": [("8_Report.py", "Report", "report")],
}
HOME = "Home"

prefixes = {}
sections = {"": [st.Page(lambda: home(sidebar()), title=HOME, icon="🔍", default=True, url_path="home")]}
for group, pages in PAGES.items():
    present = [(file, title, prefix) for file, title, prefix in pages if (ROOT / "pages" / file).is_file()]
    sections[group] = [st.Page(f"pages/{file}", title=title) for file, title, _ in present]
    prefixes |= {title: prefix for _, title, prefix in present}
navigation = st.navigation({group: pages for group, pages in sections.items() if pages})
prefix = prefixes.get(navigation.title)

url_state.restore(prefix, LINK_CHECKS)
try:
    with url_state.routed():  # a page's stop_page() ends it here, so the link below is still written
        selection = sidebar()
        photo_notice(selection)
        with shared_selection(selection), url_state.applying_link():
            navigation.run()
finally:
    url_state.sync(prefix, link_keys())
    warm_imports.start_once()  # after the first page is drawn, so the cold start does not wait for it
