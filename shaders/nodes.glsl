#version 330 core
// Nodes: one slightly rounded square per network node, coloured by its activation (the layers that
// are not drawn as whole feature maps by maps.glsl: fully connected rows, camera-facing squares).
// Drawn one layer per call (per-layer settings are plain uniforms); no vertex attributes: node
// data comes from two textures indexed by node id.  Two variants from this file:
//   default      quads: 6 vertices (two triangles) per node, gl_VertexID = 6 * node id + corner
//   NODE_POINTS  point sprites: 1 vertex per node, gl_VertexID = node id.  The fragment shader
//                cuts the square (camera-facing or lying flat) out of the sprite, so both look the
//                same; sprites are at most u_max_point pixels across.
// A square either faces the camera or lies flat in its layer's XZ plane (u_flat).
#include "lib/colormap.glsl"

#if defined VERTEX_SHADER
uniform int u_arith;         // 1: centres by arithmetic (a regular layer), 0: from u_nodes
uniform sampler2D u_maps;    // RGB32F: centre of cell (0, 0) of each map, by map number
uniform int u_map_base;      // this layer's first map number
uniform int u_layer_start;   // this layer's first node id
uniform ivec2 u_cells;       // cells per map: columns (+X), rows (+Z)
uniform float u_pitch;       // world distance between neighbouring cells
uniform float u_node_size;   // edge length of this layer's nodes (layout units)
uniform sampler2D u_nodes;   // RGBA32F: centre xyz (world) and edge length w, by node id - u_node_base
uniform int u_node_base;     // only the irregular layers have texels there
uniform sampler2D u_acts;    // R32F: activation, by node id
uniform mat4 u_view;
uniform mat4 u_proj;
uniform mat4 u_view_proj;
uniform vec2 u_viewport;     // pixels
uniform vec2 u_range;        // this layer's activations that map to t = 0 and t = 1
uniform int u_flat;          // this layer's squares lie in the XZ plane (1) or face the camera (0)
uniform float u_fill;        // this layer's node pitch / node size: how far far-away nodes grow
uniform int u_colormap;
uniform int u_highlight;     // node id drawn with a white outline; -1 for none
uniform float u_size_scale;  // multiplies every node's size
uniform float u_max_point;   // largest point size the driver draws
uniform int u_jitter_on;     // opt-in (the training scene): nodes tremble by u_jitter; 0 = still
uniform sampler2D u_jitter;  // RG32F: jitter amplitude (world units) and phase, by node id
uniform float u_time;        // seconds; drives the jitter

flat out vec3 v_color;
flat out int v_highlight;
flat out float v_extent;     // half size of the drawn square in node half sizes (> 1 with outline)
#if defined NODE_POINTS
flat out vec2 v_center;      // window position of the node centre (gl_FragCoord space)
flat out mat2 v_to_local;    // window offset in pixels -> square coordinates
flat out float v_per_px;     // square units per pixel
#else
centroid out vec2 v_local;   // square coordinates, edges at +-1; centroid: MSAA edge pixels stay inside
const vec2 CORNERS[6] = vec2[6](vec2(-1.0, -1.0), vec2(1.0, -1.0), vec2(-1.0, 1.0), vec2(-1.0, 1.0), vec2(1.0, -1.0),
                               vec2(1.0, 1.0));
#endif

ivec2 texel(int id, sampler2D tex) {
    int w = textureSize(tex, 0).x;
    return ivec2(id % w, id / w);
}

// A trembling offset: three incommensurate frequencies, so it never looks like a regular circle.
// Nodes that share a phase (one filter's map) move together.
vec3 jitter_offset(float phase, float t) {
    float p = 6.2831853 * phase;
    return vec3(sin(53.0 * t + p), 0.5 * sin(41.0 * t + 2.3 * p), sin(67.0 * t + 3.7 * p + 1.7));
}

void cull() {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // outside the clip volume: dropped
    gl_PointSize = 1.0;
}

void main() {
#if defined NODE_POINTS
    int id = gl_VertexID;
#else
    int id = gl_VertexID / 6;
#endif
    vec4 node;
    if (u_arith == 1) {
        int k = id - u_layer_start;
        int per_map = u_cells.x * u_cells.y;
        int m = k / per_map;
        int r = k - m * per_map;
        vec3 origin = texelFetch(u_maps, texel(u_map_base + m, u_maps), 0).xyz;
        node = vec4(origin + vec3(float(r % u_cells.x), 0.0, float(r / u_cells.x)) * u_pitch, u_node_size);
    } else {
        node = texelFetch(u_nodes, texel(id - u_node_base, u_nodes), 0);
    }
    if (u_jitter_on == 1) {
        vec2 jit = texelFetch(u_jitter, texel(id, u_jitter), 0).rg;
        node.xyz += jit.x * jitter_offset(jit.y, u_time);
    }
    float a = texelFetch(u_acts, texel(id, u_acts), 0).r;
    float t = (a - u_range.x) / max(u_range.y - u_range.x, 1e-20);
    v_color = isnan(a) ? vec3(0.5) : colormap(u_colormap, t);

    float half_size = 0.5 * node.w * u_size_scale;
    vec4 center_view = u_view * vec4(node.xyz, 1.0);
    float half_px = half_size * u_proj[1][1] * 0.5 * u_viewport.y / max(-center_view.z, 1e-6);
    // Far away, the gaps between nodes shrink below a pixel and alias into moire; there nodes
    // grow to fill their cell, so a distant feature map reads as a picture.
    float grow = mix(u_fill, 1.0, smoothstep(2.0, 6.0, 2.0 * half_px));
    half_size *= grow;
    half_px *= grow;
    bool hl = id == u_highlight;
    // The outline ring is at least ~2.5 pixels wide however far away the node is.
    v_extent = hl ? 1.0 + max(0.3, 2.5 / max(half_px, 1e-3)) : 1.0;
    v_highlight = hl ? 1 : 0;

    // The square's half axes in world space; local +y is "up" on screen from the default view.
    vec3 ax, ay;
    if (u_flat == 1) {
        ax = vec3(half_size, 0.0, 0.0);
        ay = vec3(0.0, 0.0, -half_size);
    } else {
        ax = vec3(u_view[0][0], u_view[1][0], u_view[2][0]) * half_size;  // camera right
        ay = vec3(u_view[0][1], u_view[1][1], u_view[2][1]) * half_size;  // camera up
    }

#if defined NODE_POINTS
    vec4 c = u_view_proj * vec4(node.xyz, 1.0);
    vec4 cx = u_view_proj * vec4(node.xyz + ax, 1.0);
    vec4 cy = u_view_proj * vec4(node.xyz + ay, 1.0);
    if (min(c.w, min(cx.w, cy.w)) <= 0.0) {
        cull();
        return;
    }
    vec2 half_vp = 0.5 * u_viewport;
    vec2 p0 = c.xy / c.w * half_vp;
    mat2 m = mat2(cx.xy / cx.w * half_vp - p0, cy.xy / cy.w * half_vp - p0);  // square -> pixels
    if (abs(determinant(m)) < 1e-6) {
        cull();  // a flat square seen edge-on
        return;
    }
    v_to_local = inverse(m);
    v_per_px = max(length(v_to_local[0]), length(v_to_local[1]));
    v_center = p0 + half_vp;
    float reach = max(abs(m[0].x) + abs(m[1].x), abs(m[0].y) + abs(m[1].y));
    gl_PointSize = min(2.0 * reach * v_extent + 1.0, u_max_point);
    gl_Position = c;
#else
    vec2 corner = CORNERS[gl_VertexID % 6] * v_extent;
    v_local = corner;
    gl_Position = u_view_proj * vec4(node.xyz + ax * corner.x + ay * corner.y, 1.0);
#endif
    if (hl) {
        gl_Position.z -= 1e-3 * gl_Position.w;  // win depth ties with the neighbours it overlaps
    }
}
#endif

#if defined FRAGMENT_SHADER
uniform float u_corner;        // corner radius, in node half sizes
uniform float u_border;        // border width, in node half sizes
uniform float u_border_shade;  // border colour = fill * this

flat in vec3 v_color;
flat in int v_highlight;
flat in float v_extent;
#if defined NODE_POINTS
flat in vec2 v_center;
flat in mat2 v_to_local;
flat in float v_per_px;
#else
centroid in vec2 v_local;
#endif
out vec4 f_color;

float sd_round_box(vec2 p, float r) {
    vec2 q = abs(p) - vec2(1.0 - r);
    return length(max(q, 0.0)) + min(max(q.x, q.y), 0.0) - r;
}

void main() {
#if defined NODE_POINTS
    vec2 local = v_to_local * (gl_FragCoord.xy - v_center);
    float per_px = v_per_px;
#else
    vec2 local = v_local;
    float per_px = max(fwidth(local.x), fwidth(local.y));
#endif
    // Round corners only where the rounding spans a pixel or more: smaller, it just eats the
    // corners of far-away nodes and lets the background speckle through a feature map.
    float corner = u_corner * smoothstep(0.5, 1.5, u_corner / per_px);
    float d = sd_round_box(local, corner);
    if (d > 0.0) {
        if (v_highlight == 1 && d < v_extent - 1.0) {
            f_color = vec4(1.0);
            return;
        }
        discard;
    }
    // Fade the border out when it would be thinner than a pixel, so far-away grids do not shimmer.
    float k = clamp(u_border / per_px - 0.5, 0.0, 1.0);
    float shade = d > -u_border ? mix(1.0, u_border_shade, k) : 1.0;
    f_color = vec4(v_color * shade, 1.0);
}
#endif
