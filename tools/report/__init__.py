"""The statistics report the product exists for: per-channel payments with growth against a
comparison period, in English and Arabic, from the committed aggregates of one output root.

    python -m tools.report --output OUT --period 2017-H1 --compare 2016-H1 --out DIR

Pure logic (periods, figures, press rounding and sentences) is apart from the reading
(`read`), the charts (`charts`, matplotlib) and the pages (`html`), so it is tested without
Beam or matplotlib.
"""
