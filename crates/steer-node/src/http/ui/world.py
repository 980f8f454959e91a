# Makes world.svg, the status page's map: Natural Earth 1:110m land (public
# domain), as TopoJSON in the world-atlas npm package, becomes one
# equirectangular SVG path in a 360x180 viewBox (x = lon + 180, y = 90 - lat).
#   npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
#   python3 world.py package/land-110m.json world.svg
import json
import sys
t = json.load(open(sys.argv[1]))
sx, sy = t['transform']['scale']; tx, ty = t['transform']['translate']
arcs = []
for a in t['arcs']:
    x = y = 0; pts = []
    for dx, dy in a:
        x += dx; y += dy
        pts.append((x*sx+tx, y*sy+ty))
    arcs.append(pts)
def arc(i):
    return arcs[i] if i >= 0 else arcs[~i][::-1]
out = []
for g in t['objects']['land']['geometries']:
    polys = g['arcs'] if g['type'] == 'MultiPolygon' else [g['arcs']]
    for poly in polys:
        for ring in poly:
            pts = []
            for i in ring:
                p = arc(i)
                pts.extend(p if not pts else p[1:])
            # A ring that crosses the antimeridian is cut there into
            # pieces, so no stripe runs across the whole map.
            pieces = [[]]
            px = py = None
            for lon, lat in pts:
                X = round(lon+180, 1); Y = round(90-lat, 1)
                if (X, Y) == (px, py): continue
                if px is not None and abs(X - px) > 180:
                    pieces.append([])
                pieces[-1].append(f"{X:g} {Y:g}"); px, py = X, Y
            if len(pieces) > 1 and pieces[0] and pieces[-1]:
                pieces[0] = pieces.pop() + pieces[0]
            for s in pieces:
                if len(s) >= 3:
                    out.append("M" + "L".join(s) + "Z")
path = "".join(out)
svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180">'
       '<!-- Land outline: Natural Earth 1:110m (public domain, naturalearthdata.com), '
       'from the world-atlas 2.0.2 npm package; equirectangular, x = lon + 180, y = 90 - lat; rings cut at the antimeridian. -->'
       f'<path d="{path}"/></svg>\n')
open(sys.argv[2], 'w').write(svg)
