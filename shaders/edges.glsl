#version 330 core
// Edges: the incoming edges of one node (Harley 2015: edges are shown for one node at a time).
// One instance per edge: a screen-space quad of u_width pixels along the segment from the source
// node's centre to the target node's centre (u_target), coloured through the shared colormap by
// the edge's value (weight, or weight x input) over the symmetric range [-m, m]: t = 0.5 + v / 2m.
// Weak edges fade (alpha grows with |v| / m) so the strong ones read through the bundle.
#include "lib/colormap.glsl"

#if defined VERTEX_SHADER
in vec3 in_source;  // world position of the source node
in float in_value;  // the edge's value (NaN: not known yet, drawn grey)

uniform mat4 u_view_proj;
uniform vec3 u_target;    // world position of the node the edges lead into
uniform vec2 u_viewport;  // pixels
uniform float u_width;    // line width in pixels
uniform float u_scale;    // m of the colour range [-m, m]
uniform float u_alpha_min;  // alpha of a zero-valued edge
uniform int u_colormap;

flat out vec4 v_color;
out float v_across;  // pixels from the line's centre, for the soft edge

#include "lib/lines.glsl"

void main() {
    vec4 a = u_view_proj * vec4(in_source, 1.0);
    vec4 b = u_view_proj * vec4(u_target, 1.0);
    if (a.z + a.w < 0.0 && b.z + b.w < 0.0) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // wholly behind the eye
        return;
    }
    vec4 a0 = a;
    clip_near(a, b);
    clip_near(b, a0);
    vec2 sa = a.xy / a.w * 0.5 * u_viewport;
    vec2 sb = b.xy / b.w * 0.5 * u_viewport;
    vec2 dir = sb - sa;
    float len = length(dir);
    dir = len > 1e-6 ? dir / len : vec2(1.0, 0.0);
    vec2 side = vec2(-dir.y, dir.x);
    int corner = gl_VertexID & 3;  // 0, 1 at the source; 2, 3 at the target (triangle strip)
    float across = (corner & 1) == 0 ? -1.0 : 1.0;
    vec4 p = corner < 2 ? a : b;
    vec2 s = (corner < 2 ? sa : sb) + side * across * (0.5 * u_width + 1.0);  // +1 px for the fade
    gl_Position = vec4(s / (0.5 * u_viewport) * p.w, p.z, p.w);
    v_across = across * (0.5 * u_width + 1.0);

    float t = 0.5 + 0.5 * in_value / max(u_scale, 1e-20);
    float strength = clamp(abs(2.0 * t - 1.0), 0.0, 1.0);
    vec3 rgb = isnan(in_value) ? vec3(0.6) : colormap(u_colormap, t);
    v_color = vec4(rgb, isnan(in_value) ? 0.5 : mix(u_alpha_min, 1.0, strength));
}
#endif

#if defined FRAGMENT_SHADER
uniform float u_width;

flat in vec4 v_color;
in float v_across;
out vec4 f_color;  // premultiplied alpha

void main() {
    // Full inside the line's width, fading to 0 over one pixel across its border (anti-aliased).
    float a = v_color.a * clamp(0.5 * u_width + 0.5 - abs(v_across), 0.0, 1.0);
    f_color = vec4(v_color.rgb * a, a);
}
#endif
