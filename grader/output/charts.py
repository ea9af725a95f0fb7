"""Inline SVG line charts for the report (parent process). No scripts, no fonts fetched:
plain SVG elements, every label escaped. Series differ by dash pattern and marker as well as
by colour, so a chart printed in greyscale still reads."""
from markupsafe import Markup, escape

STYLES = [  # (colour, dash, marker)
    ("#777777", "", "circle"),
    ("#1f5fbf", "7,4", "square"),
    ("#111111", "2,3", "triangle"),
]


def _marker(kind, x, y, colour):
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="white" stroke="{colour}" stroke-width="1.5"/>'
    if kind == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4:.1f},{y + 3:.1f} {x - 4:.1f},{y + 3:.1f}" '
            f'fill="{colour}"/>')


def _ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1.0
    step = (hi - lo) / (n - 1)
    return [lo + i * step for i in range(n)]


def line_chart(title, series, y_range, x_label, y_label, width=420, height=260):
    """series: [(name, [y per epoch])]; y_range: (lo, hi), shared between charts of a report."""
    left, right, top, bottom = 52, 12, 28, 58
    pw, ph = width - left - right, height - top - bottom
    lo, hi = y_range
    if hi <= lo:
        hi = lo + 1.0
    n = max((len(v) for _, v in series), default=1)

    def px(i):
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v):
        return top + ph * (1 - (v - lo) / (hi - lo))

    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" class="ct">{escape(title)}</text>']
    for t in _ticks(lo, hi):
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{t:.2f}</text>')
    for i in range(n):
        out.append(f'<text x="{px(i):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{i + 1}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 32}" text-anchor="middle" class="axis">'
               f'{escape(x_label)}</text>')
    out.append(f'<text transform="translate(13,{top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{escape(y_label)}</text>')
    for k, (name, values) in enumerate(series):
        colour, dash, marker = STYLES[k % len(STYLES)]
        pts = [(px(i), py(v)) for i, v in enumerate(values) if v is not None and v == v]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline class="series" data-series="{escape(name)}" points="{path}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"{dash_attr}/>')
        out.extend(_marker(marker, x, y, colour) for x, y in pts)
    lx = left
    for k, (name, _) in enumerate(series):
        colour, dash, marker = STYLES[k % len(STYLES)]
        y = height - 12
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{lx}" y1="{y - 4}" x2="{lx + 26}" y2="{y - 4}" stroke="{colour}" stroke-width="2"'
                   f'{dash_attr}/>')
        out.append(_marker(marker, lx + 13, y - 4, colour))
        out.append(f'<text x="{lx + 31}" y="{y}" class="legend">{escape(name)}</text>')
        lx += 40 + 7 * len(name)
    out.append("</svg>")
    return Markup("".join(out))


def shared_range(*value_lists):
    vals = [v for vs in value_lists for v in vs if v is not None and v == v and abs(v) != float("inf")]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or 0.1
    return max(0.0, lo - pad), hi + pad
