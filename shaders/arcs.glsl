#version 330 core
// Arcs: smooth bands along world-space polylines (a network's skip connections, the frames of its
// opaque layers).  Each polyline point comes twice, once per side of the band; the band is expanded
// on screen from the point's neighbours (a mitre, capped), in_width world units wide but never
// thinner than u_min_px, so a far-away arc stays visible and a near one reads as part of the scene.
// Brighter toward the target (in_t 0 -> 1), so the direction of flow reads without arrowheads.

#if defined VERTEX_SHADER
in vec3 in_pos;    // this point (world)
in vec3 in_prev;   // the point before (== in_pos at the start)
in vec3 in_next;   // the point after (== in_pos at the end)
in float in_side;  // -1 or +1: which edge of the band
in float in_t;     // 0 at the source, 1 at the target
in float in_width; // world units
in vec4 in_color;  // straight RGBA

uniform mat4 u_view_proj;
uniform vec2 u_viewport;     // pixels
uniform float u_px_per_unit; // pixels per world unit at clip w = 1 (proj[1][1] * viewport.y / 2)
uniform float u_min_px;      // thinnest band on screen

flat out vec4 v_color;
out float v_across;  // pixels from the band's centre line
out float v_half;    // half the band's width in pixels
out float v_t;

vec2 to_screen(vec4 c) {
    return c.xy / max(c.w, 1e-5) * 0.5 * u_viewport;
}

void main() {
    vec4 c = u_view_proj * vec4(in_pos, 1.0);
    vec4 cp = u_view_proj * vec4(in_prev, 1.0);
    vec4 cn = u_view_proj * vec4(in_next, 1.0);
    if (c.w <= 1e-4) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // behind the eye: this piece of band goes
        return;
    }
    vec2 s = to_screen(c);
    vec2 d_in = s - to_screen(cp);
    vec2 d_out = to_screen(cn) - s;
    d_in = length(d_in) > 1e-4 ? normalize(d_in) : vec2(0.0);
    d_out = length(d_out) > 1e-4 ? normalize(d_out) : vec2(0.0);
    vec2 dir = d_in + d_out;
    dir = length(dir) > 1e-4 ? normalize(dir) : (length(d_in) > 0.0 ? d_in : vec2(1.0, 0.0));
    vec2 normal = vec2(-dir.y, dir.x);
    // Mitre: keep the band's width across a bend, but never more than twice (sharp turns).
    float mitre = 1.0;
    if (length(d_in) > 0.0) {
        mitre = 1.0 / max(dot(normal, vec2(-d_in.y, d_in.x)), 0.5);
    }
    float half_px = max(0.5 * in_width * u_px_per_unit / c.w, 0.5 * u_min_px);
    float reach = (half_px + 1.0) * mitre;  // +1 px for the soft edge
    s += normal * in_side * reach;
    gl_Position = vec4(s / (0.5 * u_viewport) * c.w, c.z, c.w);
    v_across = in_side * (half_px + 1.0);
    v_half = half_px;
    v_t = in_t;
    v_color = in_color;
}
#endif

#if defined FRAGMENT_SHADER
flat in vec4 v_color;
in float v_across;
in float v_half;
in float v_t;
out vec4 f_color;  // premultiplied alpha

void main() {
    float a = v_color.a * clamp(v_half + 0.5 - abs(v_across), 0.0, 1.0);
    vec3 rgb = v_color.rgb * mix(0.55, 1.0, smoothstep(0.0, 1.0, v_t));
    f_color = vec4(rgb * a, a);
}
#endif
