#version 330 core
// Feature maps: one flat quad per map, its nodes drawn by the fragment shader.
// A grid layer's map is a regular w x h grid of cells in its layer's XZ plane; each fragment finds
// its cell by arithmetic, fetches that node's activation (texelFetch: nearest) and decides how much
// of the pixel the node square covers.  One quad per map cannot crack between neighbouring nodes:
// far away the squares grow to fill their cells (the formula of nodes.glsl, so picking agrees) and
// the map reads as one seamless picture; closer, the gap opens as a coverage fraction of each pixel
// (no sub-pixel gap aliases into moire or single-pixel holes), then rounded corners and darker
// borders fade in once they span a pixel.  Drawn one layer per call, instanced over its maps;
// no vertex attributes: map origins come from a texture by map number.
#include "lib/colormap.glsl"

vec3 node_colour(float a, vec2 range, int cmap) {
    float t = (a - range.x) / max(range.y - range.x, 1e-20);
    return isnan(a) ? vec3(0.5) : colormap(cmap, t);
}

// Half size of a node square in cell units (edges of a full cell at +-0.5), grown toward its cell
// while the node is small on screen: nodes.glsl's grow = mix(fill, 1, smoothstep(2, 6, size px)).
float grown_half(float half_cells, float fill, float half_px) {
    return half_cells * mix(fill, 1.0, smoothstep(2.0, 6.0, 2.0 * half_px));
}

#if defined VERTEX_SHADER
uniform sampler2D u_maps;    // RGB32F: centre of cell (0, 0) of each map (world), by map number
uniform mat4 u_view;
uniform mat4 u_proj;
uniform mat4 u_view_proj;
uniform vec2 u_viewport;
uniform int u_map_base;      // this layer's first map number
uniform int u_node_base;     // node id of cell (0, 0) of this layer's first map
uniform ivec2 u_cells;       // cells per map (columns along +X, rows along +Z)
uniform float u_pitch;       // world distance between neighbouring cells
uniform float u_half;        // a node's half size, world units (layout size x size scale / 2)
uniform float u_fill;        // how far a far-away node grows (pitch / size; 1 = not at all)
uniform int u_highlight;     // node id drawn with a white outline; -1 for none
uniform int u_jitter_on;
uniform sampler2D u_jitter;  // RG32F by node id: amplitude and phase (one map moves as one)
uniform float u_time;
uniform int u_pass;          // 0: every map; 1: only maps whose gaps are closed; 2: only the others
uniform float u_closed_px;   // a map's gaps are closed while its biggest node is at most this many px

out vec2 v_cell;             // position in cell units: cell (i, j) spans i +- 0.5, j +- 0.5
flat out int v_first;        // node id of cell (0, 0)
flat out float v_depth0;     // view-space depth (-z) of cell (0, 0)'s centre
flat out vec2 v_depth_step;  // change of that depth per cell along x and y
flat out ivec2 v_hl;         // the highlighted cell, (-1, -1) when it is not in this map

const vec2 CORNERS[6] = vec2[6](vec2(0, 0), vec2(1, 0), vec2(0, 1), vec2(0, 1), vec2(1, 0), vec2(1, 1));

ivec2 texel(int id, sampler2D tex) {
    int w = textureSize(tex, 0).x;
    return ivec2(id % w, id / w);
}

vec3 jitter_offset(float phase, float t) {  // as nodes.glsl
    float p = 6.2831853 * phase;
    return vec3(sin(53.0 * t + p), 0.5 * sin(41.0 * t + 2.3 * p), sin(67.0 * t + 3.7 * p + 1.7));
}

// Whether every node of the map at `origin` is small enough on screen for its square to fill its cell
// (the fragment shader's grown_half at 2 * half_px <= 2): then the map covers each of its pixels wholly
// and may be drawn opaque.  Judged at the map's least view depth, one of its four corners.
bool gaps_closed(vec3 origin) {
    if (grown_half(u_half / u_pitch, u_fill, 0.0) < 0.5 - 1e-3) {
        return false;  // a size scale below 1 keeps a gap open however far
    }
    float near = 1e30;
    for (int k = 0; k < 4; k++) {
        vec2 c = vec2(k % 2, k / 2) * vec2(u_cells) - 0.5;
        near = min(near, -(u_view * vec4(origin + vec3(c.x, 0.0, c.y) * u_pitch, 1.0)).z);
    }
    return near > 1e-6 && 2.0 * u_half * u_proj[1][1] * 0.5 * u_viewport.y / near <= u_closed_px;
}

void main() {
    int map = u_map_base + gl_InstanceID;
    vec3 origin = texelFetch(u_maps, texel(map, u_maps), 0).xyz;
    int n = u_cells.x * u_cells.y;
    v_first = u_node_base + gl_InstanceID * n;
    if (u_jitter_on == 1) {
        vec2 jit = texelFetch(u_jitter, texel(v_first, u_jitter), 0).rg;
        origin += jit.x * jitter_offset(jit.y, u_time);
    }
    if (u_pass != 0 && gaps_closed(origin) != (u_pass == 1)) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // the other pass draws this map: outside the clip volume
        return;
    }
    vec3 step_view = vec3(u_view[0][2], u_view[1][2], u_view[2][2]) * u_pitch;  // d(view z) / d world x, z
    v_depth0 = -(u_view * vec4(origin, 1.0)).z;
    v_depth_step = -vec2(step_view.x, step_view.z);

    // Grow the quad by the highlight ring where the highlighted node lies in this map.
    float margin = 0.0;
    int k = u_highlight - v_first;
    v_hl = ivec2(-1);
    if (u_highlight >= 0 && k >= 0 && k < n) {
        v_hl = ivec2(k % u_cells.x, k / u_cells.x);
        float depth = max(v_depth0 + dot(vec2(v_hl), v_depth_step), 1e-6);
        float half_px = u_half * u_proj[1][1] * 0.5 * u_viewport.y / depth;
        float grown = grown_half(u_half / u_pitch, u_fill, half_px);
        float px_cells = (u_half / u_pitch) / max(half_px, 1e-6);  // cells per pixel there
        margin = max(0.3 * grown, 2.5 * px_cells) + max(grown - 0.5, 0.0) + px_cells;
    }
    vec2 corner = CORNERS[gl_VertexID % 6];
    v_cell = mix(vec2(-0.5 - margin), vec2(u_cells) - 0.5 + margin, corner);
    vec3 world = origin + vec3(v_cell.x, 0.0, v_cell.y) * u_pitch;
    gl_Position = u_view_proj * vec4(world, 1.0);
}
#endif

#if defined FRAGMENT_SHADER
uniform sampler2D u_acts;      // activation by node id
uniform vec2 u_range;
uniform int u_colormap;
uniform mat4 u_proj;
uniform vec2 u_viewport;
uniform ivec2 u_cells;
uniform float u_pitch;
uniform float u_half;
uniform float u_fill;
uniform float u_corner;        // corner radius, in node half sizes
uniform float u_border;        // border width, in node half sizes
uniform float u_border_shade;  // border colour = fill * this

in vec2 v_cell;
flat in int v_first;
flat in float v_depth0;
flat in vec2 v_depth_step;
flat in ivec2 v_hl;
out vec4 f_color;

ivec2 texel(int id, sampler2D tex) {
    int w = textureSize(tex, 0).x;
    return ivec2(id % w, id / w);
}

float sd_round_box(vec2 p, vec2 half_size, float r) {
    vec2 q = abs(p) - half_size + r;
    return length(max(q, 0.0)) + min(max(q.x, q.y), 0.0) - r;
}

// Fraction of a pixel (footprint fw cells wide, centred b cells from a cell boundary) that falls in
// the gap of half width gh around that boundary; the gap is shared with the neighbour, so a pixel
// straddling the boundary sees the same gap from either side and a closed gap (gh = 0) covers nothing.
float gap_cover(float b, float fw, float gh) {
    return max(0.0, min(b + 0.5 * fw, gh) - max(b - 0.5 * fw, -gh)) / fw;
}

float half_px_at(ivec2 cell) {
    float depth = max(v_depth0 + dot(vec2(cell), v_depth_step), 1e-6);
    return u_half * u_proj[1][1] * 0.5 * u_viewport.y / depth;
}

#if defined MAPS_CLOSED
// A map whose gaps are closed (every node at most ~2 px, see gaps_closed): each pixel is its node's
// colour, wholly covered: what the general shader below computes there, without working out coverage,
// corners or border.
void main() {
    ivec2 cell = ivec2(floor(v_cell + 0.5));
    if (any(lessThan(cell, ivec2(0))) || any(greaterThanEqual(cell, u_cells))) {
        discard;  // a pixel centre on the quad's rim, rounded outside: as the general shader
    }
    float a = texelFetch(u_acts, texel(v_first + cell.y * u_cells.x + cell.x, u_acts), 0).r;
    f_color = vec4(node_colour(a, u_range, u_colormap), 1.0);
}
#else
void main() {
    vec2 fw = max(fwidth(v_cell), vec2(1e-6));  // cells per pixel, per axis
    float half_cells = u_half / u_pitch;

    if (v_hl.x >= 0) {  // the white ring around the highlighted node, over its neighbours
        float half_px = half_px_at(v_hl);
        float grown = grown_half(half_cells, u_fill, half_px);
        float px_per_cell = half_px / half_cells;
        float ring = max(0.3 * grown, 2.5 / px_per_cell);
        float d = sd_round_box(v_cell - vec2(v_hl), vec2(grown), 0.0);
        if (d > 0.0 && d < ring) {
            f_color = vec4(1.0);
            return;
        }
    }
    ivec2 cell = ivec2(floor(v_cell + 0.5));
    if (any(lessThan(cell, ivec2(0))) || any(greaterThanEqual(cell, u_cells))) {
        discard;
    }
    vec2 f = v_cell - vec2(cell);  // offset from the cell centre, in [-0.5, 0.5]
    float half_px = half_px_at(cell);
    float grown = grown_half(half_cells, u_fill, half_px);

    float gh = max(0.5 - grown, 0.0);
    vec2 b = 0.5 - abs(f);
    float alpha = (1.0 - gap_cover(b.x, fw.x, gh)) * (1.0 - gap_cover(b.y, fw.y, gh));

    // Square coordinates (edges at +-1), as nodes.glsl.  Corners round only where the rounding
    // spans a pixel and the gap a whole one, so the corners of four neighbours never open a hole.
    vec2 local = f / grown;
    float per_px = max(fw.x, fw.y) / grown;
    float gap_px = 2.0 * gh / max(fw.x, fw.y);
    float corner = u_corner * smoothstep(0.5, 1.5, u_corner / per_px) * smoothstep(1.0, 2.0, gap_px);
    float d = sd_round_box(local, vec2(1.0), corner);
    if (corner > 0.0) {
        alpha = min(alpha, clamp(0.5 - d / per_px, 0.0, 1.0));
    }
    if (alpha < 1.0 / 255.0) {
        discard;
    }
    float a = texelFetch(u_acts, texel(v_first + cell.y * u_cells.x + cell.x, u_acts), 0).r;
    vec3 color = node_colour(a, u_range, u_colormap);
    // The darker rim fades in once it is half a pixel wide, so far-away grids do not shimmer.
    float k = clamp(u_border / per_px - 0.5, 0.0, 1.0);
    float shade = d > -u_border ? mix(1.0, u_border_shade, k) : 1.0;
    f_color = vec4(color * shade, alpha);
}
#endif
#endif
