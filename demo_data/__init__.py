"""The demo dataset's parts, driven by make_demo_data.py: corpus and sources (corpus, folk, art, selection),
rendering (render), tags and annotation rows (annotations), word vectors (vectors), the simulated listening
data (taste), the report (report) and the processes that must not outlive the build (processes)."""
