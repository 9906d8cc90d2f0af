// Colormaps on t in [0, 1], selected by number (engine.gpu.colormaps.index(name)).
// The control points come from the table in engine/gpu/colormaps.py, injected by the program
// loader as the virtual include below; interpolation matches colormaps.sample() exactly.
#include "gen/colormaps.glsl"

// t = inf or NaN (an activation that overflowed float32) gives CMAP_NONFINITE, a colour no map has.
vec3 colormap(int which, float t) {
    if (isnan(t) || isinf(t)) {
        return CMAP_NONFINITE;
    }
    int w = clamp(which, 0, CMAP_COUNT - 1);
    int first = CMAP_OFFSET[w];
    int n = CMAP_OFFSET[w + 1] - first;
    float x = clamp(t, 0.0, 1.0) * float(n - 1);
    int i = min(int(x), n - 2);
    return mix(CMAP_COLORS[first + i], CMAP_COLORS[first + i + 1], x - float(i));
}
