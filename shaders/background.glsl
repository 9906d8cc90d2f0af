#version 330 core
// Background (Harley 2015): a large blurred ellipse, light in the centre and fading toward the
// edges, "a soft light emanating from the center".  One full-screen triangle, no vertex buffer.
// The ellipse is measured in half viewport heights, so it keeps its shape (wider than tall) at
// any window aspect.  Kept cheap on purpose: on llvmpipe every fragment instruction here costs
// about a millisecond per frame at 1280x720.

#if defined VERTEX_SHADER
uniform float u_aspect;  // viewport width / height
uniform vec2 u_radii;    // ellipse half-axes, in half viewport heights

out vec2 v_p;            // position in ellipse units: the rim of the ellipse is at |v_p| = 1

void main() {
    // Three vertices that cover the whole viewport: (-1,-1), (3,-1), (-1,3).
    vec2 ndc = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_p = vec2(ndc.x * u_aspect, ndc.y) / u_radii;  // linear in ndc, so it interpolates exactly
    gl_Position = vec4(ndc, 1.0, 1.0);
}
#endif

#if defined FRAGMENT_SHADER
uniform vec3 u_center_color;
uniform vec3 u_edge_color;
uniform float u_falloff;  // light at the rim = 2^-falloff: a gaussian glow, no hard edge

in vec2 v_p;
out vec4 f_color;

void main() {
    float light = exp2(-u_falloff * dot(v_p, v_p));
    vec3 c = mix(u_edge_color, u_center_color, light);
    // Half a step of 8-bit noise against banding in the wide, slow gradient.
    float n = fract(52.9829189 * fract(dot(gl_FragCoord.xy, vec2(0.06711056, 0.00583715))));
    f_color = vec4(c + (n - 0.5) / 255.0, 1.0);
}
#endif
