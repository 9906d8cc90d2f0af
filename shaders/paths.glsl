#version 330 core
// Paths: thick line segments between two world points, one instance each (the training scene's
// filter-to-filter paths, ReVACNN's "path connecting two layers", and outlines of a selected map).
// Each instance is a screen-space quad of in_width pixels from in_p0 to in_p1, in its own colour
// (premultiplied alpha, anti-aliased over one pixel across its border).

#if defined VERTEX_SHADER
in vec3 in_p0;      // world start
in vec3 in_p1;      // world end
in float in_width;  // pixels
in vec4 in_color;   // straight (not premultiplied) RGBA

uniform mat4 u_view_proj;
uniform vec2 u_viewport;  // pixels

flat out vec4 v_color;
flat out float v_width;
out float v_across;  // pixels from the line's centre, for the soft edge

#include "lib/lines.glsl"

void main() {
    vec4 a = u_view_proj * vec4(in_p0, 1.0);
    vec4 b = u_view_proj * vec4(in_p1, 1.0);
    if ((a.z + a.w < 0.0 && b.z + b.w < 0.0) || in_width <= 0.0) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // wholly behind the eye, or hidden
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
    int corner = gl_VertexID & 3;  // 0, 1 at the start; 2, 3 at the end (triangle strip)
    float across = (corner & 1) == 0 ? -1.0 : 1.0;
    vec4 p = corner < 2 ? a : b;
    float half_w = 0.5 * in_width + 1.0;  // +1 px for the fade
    vec2 s = (corner < 2 ? sa : sb) + side * across * half_w;
    gl_Position = vec4(s / (0.5 * u_viewport) * p.w, p.z, p.w);
    v_across = across * half_w;
    v_width = in_width;
    v_color = in_color;
}
#endif

#if defined FRAGMENT_SHADER
flat in vec4 v_color;
flat in float v_width;
in float v_across;
out vec4 f_color;  // premultiplied alpha

void main() {
    float a = v_color.a * clamp(0.5 * v_width + 0.5 - abs(v_across), 0.0, 1.0);
    f_color = vec4(v_color.rgb * a, a);
}
#endif
